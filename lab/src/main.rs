//! `ironvirt-lab`: prepare the lab, run the demo, or run a developer's payload in L1.

fn main() {
    let dir = ironvirt_lab::artifacts::lab_dir();
    match ironvirt_lab::artifacts::prepare(&dir) {
        Ok(a) => println!("{a:#?}"),
        Err(e) => {
            eprintln!("ironvirt-lab: {e}");
            std::process::exit(1);
        }
    }
}
