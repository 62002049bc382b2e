fn main(){println!("herd")}
