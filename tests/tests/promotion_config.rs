//! The promotion gate in mesh-config, checked offline by the validator
//! (tests/validate/validate_mesh.py) against the vendored Flagger and Argo Rollouts CRDs and
//! against each other: the shipped variants pass, and broken copies are rejected naming file,
//! resource and error — Argo's verdict conditions swapped, Flagger's rollback webhook gone, a
//! webhook on another path, the gate asking about a rule without a hypothesis or about
//! another rule than Argo's, the canonical configuration without its `promote`, a Rollout
//! step naming a template the build does not have. The verdict's queries themselves run on a
//! real Prometheus in `promotion`.

use crate::mesh_config::{copy_of_mesh_config, edit, mesh_config, text, validator};

#[test]
fn the_shipped_gate_passes_and_is_asked_alike_by_flagger_and_argo() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("verdicts.json");
    let out = validator(
        &mesh_config(),
        &[
            std::ffi::OsStr::new("--verdict-queries"),
            out_file.as_os_str(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 verdict queries: 0 problems"),
        "{}",
        text(&out)
    );
    let verdicts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    let v = &verdicts[0];
    assert_eq!(v["name"], "grayguard-promotion");
    assert_eq!(v["rules"], serde_json::json!(["crane-cameras"]));
    assert!(
        v["query"]
            .as_str()
            .unwrap()
            .contains("grayguard_promotion_state{rule=\"{{args.rule}}\"}"),
        "{v}"
    );
}

#[test]
fn the_validator_rejects_a_gate_that_drifts() {
    let dir = copy_of_mesh_config();
    let m = dir.path().join("mesh-config");
    let argo = m.join("variants/argo-rollouts/analysis-template.yaml");
    let canary = m.join("variants/flagger/canary.yaml");
    // Argo: Successful on a refutation.
    edit(
        &argo,
        "successCondition: result[0] == 1",
        "successCondition: result[0] == 2",
    );
    edit(
        &argo,
        "failureCondition: result[0] == 2",
        "failureCondition: result[0] == 1",
    );
    // Flagger: no rollback webhook, and the confirmation asked on another path about a rule
    // without a hypothesis.
    edit(
        &canary,
        "        type: rollback\n",
        "        type: post-rollout\n",
    );
    edit(&canary, "/flagger/confirm-promotion", "/flagger/confirm");
    // Both of its webhooks.
    for _ in 0..2 {
        edit(
            &canary,
            "          rule: crane-cameras",
            "          rule: dock-cameras",
        );
    }
    // A Rollout step naming a template the build does not have.
    edit(
        &m.join("variants/argo-rollouts/rollout.yaml"),
        "templateName: grayguard-promotion",
        "templateName: grayguard-promote",
    );
    let out = validator(&m, &[]);
    let report = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "broken copy accepted:\n{report}"
    );
    for expected in [
        "mesh-config/variants/argo-rollouts/analysis-template.yaml: AnalysisTemplate yolo/grayguard-promotion: metric 'grayguard-promotion': successCondition must be `result[0] == 1` (proven) and failureCondition `result[0] == 2` (refuted)",
        "mesh-config/variants/flagger/canary.yaml: Canary yolo/yolo-detector: no rollback webhook: the promotion gate is Argo Rollouts' only",
        "mesh-config/variants/flagger/canary.yaml: Canary yolo/yolo-detector: webhook 'grayguard-promotion-proven': confirm-promotion is answered at /flagger/confirm-promotion (grayguard-report --serve)",
        "the promotion gate asks about rule 'dock-cameras', which no plugin configuration gives a promotion hypothesis (rules with one: ['crane-cameras'])",
        "the promotion gate asks about rules [], Flagger's webhooks about ['dock-cameras']",
        "kustomize build mesh-config/variants/argo-rollouts: Rollout yolo/yolo-detector: step analysis template 'grayguard-promote' is not in this build",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
}

#[test]
fn the_gate_needs_the_hypothesis_in_the_canonical_configuration() {
    let dir = copy_of_mesh_config();
    let m = dir.path().join("mesh-config");
    let promote = r#""promote": { "latency_max_ratio": 1.1, "error_max_excess": 0.02, "agreement_min": 0.9, "alpha": 0.05, "min_gray_responses": 200 }"#;
    for file in [
        "local/envoy.yaml",
        "wasm-plugin/wasm-plugin.yaml",
        "variants/envoy-filter/envoy-filter.yaml",
    ] {
        // The same configuration everywhere, without a hypothesis.
        let body = std::fs::read_to_string(m.join(file)).unwrap();
        let at = body
            .find(promote)
            .unwrap_or_else(|| panic!("{file}: no {promote}"));
        let start = body[..at].rfind("},").expect("the breach object before it") + 1;
        let cut = format!("{}{}", &body[..start], &body[at + promote.len()..]);
        std::fs::write(m.join(file), cut).unwrap();
    }
    let out = validator(&m, &[]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "accepted:\n{report}");
    assert!(
        report.contains("the promotion gate asks about rule 'crane-cameras', which no plugin configuration gives a promotion hypothesis (rules with one: [])"),
        "{report}"
    );
    assert!(
        !report.contains("differs from mesh-config/local/envoy.yaml"),
        "the cut left the three configurations unequal:\n{report}"
    );
}
