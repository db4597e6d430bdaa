//! The registry is sorted and unique, disjoint from the not-supported list, dispatches every
//! entry, and `docs/coreml-coverage.md` is generated from it.

use super::{NOT_SUPPORTED, REGISTRY, coverage_markdown, lookup};

#[test]
fn registry_is_sorted_unique_and_disjoint() {
    for w in REGISTRY.windows(2) {
        assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
    }
    for (op, _) in NOT_SUPPORTED {
        assert!(lookup(op).is_none(), "{op} is both supported and not");
    }
    for e in REGISTRY {
        assert!(std::ptr::eq(lookup(e.name).expect("lookup"), e));
    }
}

#[test]
fn coverage_doc_matches_registry() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/coreml-coverage.md");
    let want = coverage_markdown();
    if std::env::var_os("UPDATE_COVERAGE_DOC").is_some() {
        let tmp = path.with_extension("md.tmp");
        std::fs::write(&tmp, &want).expect("write coverage doc");
        std::fs::rename(&tmp, &path).expect("rename coverage doc");
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "docs/coreml-coverage.md is out of date: run UPDATE_COVERAGE_DOC=1 cargo test -p \
         backend-candle coverage_doc"
    );
}
