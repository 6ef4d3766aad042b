//! The load tool cannot rot: `murmur-load` (built by `cargo build --workspace`, like
//! `murmur`) runs a seconds-long fan-out and a Sink scenario against a real node, must
//! exit 0 and report deliveries; then `murmur-load report` renders a BENCHMARKS.md from
//! the result. The figures themselves are not checked (`make bench` records them).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use murmur_tests::{murmur_bin, within, NodeBuilder, JWT_SECRET};
use serde_json::Value;

/// `target/debug/murmur-load`, next to the `murmur` under test (or `$MURMUR_LOAD_BIN`).
fn load_bin() -> PathBuf {
    let path = match std::env::var_os("MURMUR_LOAD_BIN") {
        Some(p) => PathBuf::from(p),
        None => murmur_bin().with_file_name("murmur-load"),
    };
    if !path.is_file() {
        panic!(
            "murmur-load not found at {}: run `cargo build -p murmur-loadtest` (or `make build`) \
             first, or point MURMUR_LOAD_BIN at it",
            path.display()
        );
    }
    path
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "murmur-load-smoke-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn load(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(load_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MURMUR_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(args).kill_on_drop(true);
    let what = format!("murmur-load {}", args.join(" "));
    let out = within(&what, Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} exited with {}\n--- stderr ---\n{}\n--- stdout ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} was not written: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn received(result: &Value) -> u64 {
    result["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps: {result}"))
        .iter()
        .map(|s| s["received"].as_u64().unwrap_or(0))
        .sum()
}

const SHORT: [&str; 8] = [
    "--warmup",
    "500ms",
    "--duration",
    "2s",
    "--drain",
    "2s",
    "--progress",
    "never",
];

#[actix_rt::test]
async fn the_load_tool_drives_a_real_node_and_reports() {
    // Dev mode for the plaintext Sink listener; the harness's JWT secret still applies.
    let node = NodeBuilder::new().env("MURMUR_DEV", "1").spawn().await;
    let dir = scratch_dir();
    let url = node.public_url();
    let pid = format!("node={}", node.pid());

    let fanout = dir.join("fanout-murmuration.json");
    let svg = dir.join("fanout-murmuration.svg");
    let mut args = vec![
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "5",
        "--publishers",
        "1",
        "--rates",
        "50",
        "--jwt-secret",
        JWT_SECRET,
        "--watch",
        &pid,
        "--min-events",
        "1",
    ];
    args.extend(SHORT);
    let json_arg = fanout.to_string_lossy().to_string();
    let svg_arg = svg.to_string_lossy().to_string();
    args.extend(["--json", &json_arg, "--svg", &svg_arg]);
    load(&args).await;
    let result = read_json(&fanout);
    let deliveries = received(&result);
    assert!(deliveries > 0, "no deliveries reported: {result}");
    assert_eq!(result["scenario"], "fanout", "{result}");
    assert!(
        result["series"].as_array().is_some_and(|s| !s.is_empty()),
        "no latency series: {result}"
    );
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.starts_with("<svg") && plot.contains("<polyline"),
        "{plot}"
    );

    let sink_json = dir.join("sink-memory.json");
    let sink_addr = node.sink_addr().to_string();
    let sink_arg = sink_json.to_string_lossy().to_string();
    let mut args = vec![
        "sink",
        "--addr",
        &sink_addr,
        "--devices",
        "3",
        "--window",
        "4",
        "--rates",
        "100",
        "--min-events",
        "1",
        "--json",
        &sink_arg,
    ];
    args.extend(SHORT);
    load(&args).await;
    let acks = received(&read_json(&sink_json));
    assert!(acks > 0, "no Sink ACKs reported");

    let inbox_json = dir.join("inbox-memory.json");
    let inbox_arg = inbox_json.to_string_lossy().to_string();
    let mut args = vec![
        "inbox",
        "--url",
        &url,
        "--sessions",
        "30",
        "--page",
        "20",
        "--connections",
        "2",
        "--rates",
        "20",
        "--jwt-secret",
        JWT_SECRET,
        "--min-events",
        "1",
        "--json",
        &inbox_arg,
    ];
    args.extend(SHORT);
    load(&args).await;
    let inbox = read_json(&inbox_json);
    assert!(received(&inbox) > 0, "no inbox pages reported: {inbox}");
    assert_eq!(inbox["setup"]["sessions_created"], 30, "{inbox}");

    let report = dir.join("BENCHMARKS.md");
    let dir_arg = dir.to_string_lossy().to_string();
    let report_arg = report.to_string_lossy().to_string();
    load(&["report", "--dir", &dir_arg, "--out", &report_arg]).await;
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("## Targets"), "{md}");
    assert!(md.contains("ACKs/s"), "{md}");
    assert!(md.contains("## Chat: the inbox and presence"), "{md}");
    assert!(md.contains("inbox pages"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}
