//! `example-todo`: serve the todo service (default), or print its subscriptions.

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (app, routes) = example_todo::service();
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => {
            init_tracing();
            app.serve_with(routes).await?;
        }
        Some("subscriptions") => {
            println!("{}", serde_json::to_string_pretty(&app.subscriptions())?)
        }
        Some(other) => {
            anyhow::bail!("unknown command `{other}`: use `serve` (default) or `subscriptions`")
        }
    }
    Ok(())
}
