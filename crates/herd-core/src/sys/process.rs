//! Process control: fork, signals, fd inheritance (being written).
