//! `ingest`: parses configuration, starts telemetry, runs the application until SIGTERM.

use clap::Parser;
use omnidm_ingest::Application;
use omnidm_shared::config::IngestConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = IngestConfig::parse();
    if let Err(error) = config.validate() {
        eprintln!("error: {error}");
        std::process::exit(2);
    }
    omnidm_shared::telemetry::init(config.telemetry.log_format);
    let app = Application::build(config).await?;
    tracing::info!(addr = %app.local_addr(), "ingest listening");
    app.run_until(omnidm_shared::ops::shutdown_signal()).await?;
    Ok(())
}
