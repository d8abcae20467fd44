//! crds/ and docs/api.md must be exactly what the Rust types generate (`make crds`
//! regenerates them).

use std::collections::BTreeSet;

#[test]
fn crds_directory_matches_the_rust_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let rendered = ce_operator::crdgen::rendered().expect("render CRDs");
    for (name, content) in &rendered {
        let on_disk = std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("crds/{name} is missing ({e}); run `make crds`"));
        assert!(
            on_disk == *content,
            "crds/{name} differs from the Rust types; run `make crds`"
        );
    }
    let expected: BTreeSet<_> = rendered.iter().map(|(n, _)| n.clone()).collect();
    let present: BTreeSet<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(present, expected, "crds/ holds files the types do not generate");
}

#[test]
fn the_chart_ships_the_same_crds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, content) in ce_operator::crdgen::rendered().expect("render CRDs") {
        let in_chart = std::fs::read_to_string(root.join("charts/ce-operator/crds").join(&name))
            .unwrap_or_else(|e| panic!("charts/ce-operator/crds/{name} is missing ({e}); run `make crds`"));
        assert!(
            in_chart == content,
            "charts/ce-operator/crds/{name} differs from crds/; run `make crds`"
        );
    }
    let count = std::fs::read_dir(root.join("charts/ce-operator/crds")).unwrap().count();
    assert_eq!(
        count,
        ce_operator::api::crds().len(),
        "the chart has CRD files the types do not generate"
    );
}

#[test]
fn docs_api_md_matches_the_rust_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md");
    let on_disk =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("docs/api.md is missing ({e}); run `make crds`"));
    assert!(
        on_disk == ce_operator::crdgen::api_reference(),
        "docs/api.md differs from the Rust types; run `make crds`"
    );
}
