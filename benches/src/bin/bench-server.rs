//! Serves one of the benchmarked routers on `127.0.0.1:<free port>` for `benches/throughput.sh`.
//!
//! ```text
//! bench-server framework|baseline [--workers N] [--max-secs S]
//! bench-server body            # prints the CloudEvent body the load generator sends
//! ```
//!
//! Prints `listening http://127.0.0.1:PORT<route>` once bound. Exits on SIGTERM or Ctrl-C, or after
//! `--max-secs` (default 600), whichever comes first, so a crashed script never leaves it
//! running for long.

use std::time::Duration;

use event_bench::{baseline_router, cloud_event_body, framework_router, ROUTE};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("");
    let flag = |name: &str, default: u64| event_bench::flag(&args, name, default);
    let router = match mode {
        "framework" => framework_router(1),
        "baseline" => baseline_router(),
        "body" => {
            println!(
                "{}",
                cloud_event_body("3f1b2c9e-0d7a-4e57-9a51-7c2f4b8e1d20")
            );
            return;
        }
        _ => {
            eprintln!("usage: bench-server framework|baseline|body [--workers N] [--max-secs S]");
            std::process::exit(2);
        }
    };
    let workers = flag("--workers", 1) as usize;
    let max = Duration::from_secs(flag("--max-secs", 600));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("a local address");
        println!("listening http://{addr}{ROUTE}");
        let stop = async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = tokio::time::sleep(max) => eprintln!("bench-server: --max-secs reached"),
            }
        };
        axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
            .expect("serve");
    });
}
