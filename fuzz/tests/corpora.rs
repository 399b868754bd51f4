//! Every input kept in `fuzz/corpus/TARGET/` (the fuzzers' minimised corpora and any input that
//! once crashed) through its decoder: each must return.

use std::path::Path;

#[test]
fn every_kept_input_is_decoded_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in aurigraph_fuzz::TARGETS {
        let dir = root.join(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            target(&data);
            inputs += 1;
        }
        assert!(inputs > 0, "{}: no kept inputs", dir.display());
        println!("{name}: {inputs} inputs");
    }
}
