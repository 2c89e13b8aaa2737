//! golden-sim: API simulators for golden's platform tests (work in progress).

fn main() {
    eprintln!("golden-sim: not implemented yet");
    std::process::exit(2);
}
