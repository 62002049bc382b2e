//! The frame protocol server (being written).
