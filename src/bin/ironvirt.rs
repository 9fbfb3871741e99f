fn main() {
    eprintln!("ironvirt: no commands yet");
    std::process::exit(1);
}
