//! `make run`'s script (mesh-config/local/run.sh) stops the whole mesh on a SIGINT or SIGTERM
//! sent to its process group, however it was launched: from a terminal (Ctrl-C reaches every
//! process of the foreground group), and as a background job of a script (`make run &` in a
//! non-interactive shell), where bash starts it with SIGINT ignored. The group's signal reaches
//! the components too; they exit, and the supervisor must not take that for crashes and start
//! them again. Each launch mode starts the real mesh ([`LocalMesh`]), signals its group, and
//! checks that run.sh and every process it listed are gone, that nothing was restarted, and
//! that the ports are free.
//!
//! run.sh listens on the fixed ports of `make run`: never run this test beside another that
//! starts it.
//!
//! Test code may panic freely: a failed expectation is a failed test.

use std::time::{Duration, Instant};

use grayguard_e2e::http;
use grayguard_e2e::local_mesh::{ADMIN, Launch, LocalMesh};
use grayguard_e2e::process::running;

/// Starts the mesh `launch`'s way, sends `signal` to its group, and checks everything stopped.
fn stops_on(launch: Launch, signal: &str) {
    let mut mesh = LocalMesh::start(launch, &[]);
    let components = mesh.status();
    let before = mesh.log().len();
    let sent = Instant::now();
    mesh.signal_group(signal);
    assert!(
        mesh.wait_stopped(Duration::from_secs(60)),
        "{launch:?}: run.sh still runs 60 s after SIG{signal} to its group:\n{}",
        mesh.log()
    );
    eprintln!(
        "{launch:?}, SIG{signal} to the group: run.sh stopped in {:.1} s",
        sent.elapsed().as_secs_f64()
    );
    let log = mesh.log();
    let after = &log[before..];
    assert!(
        after.contains("[run] stopped"),
        "{launch:?}: no clean stop:\n{log}"
    );
    assert!(
        !after.contains("restarted (pid"),
        "{launch:?}: the supervisor restarted components after SIG{signal}:\n{after}"
    );
    for c in components {
        let pid = c.pid.unwrap();
        assert!(
            !running(pid),
            "{launch:?}: {} (pid {pid}) outlived run.sh",
            c.name
        );
    }
    assert!(
        http::get(&format!("{ADMIN}/ready")).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn a_group_sigint_or_sigterm_stops_the_mesh_however_it_was_launched() {
    // A script's background job: SIGINT ignored on entry (the case that restarted every
    // component instead of stopping), then SIGTERM, then Ctrl-C in a terminal.
    stops_on(Launch::BackgroundJob, "INT");
    stops_on(Launch::BackgroundJob, "TERM");
    stops_on(Launch::Terminal, "INT");
}
