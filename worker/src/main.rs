//! `worker`: parses configuration, starts telemetry, and runs the consumer (or a maintenance command).

use clap::{Parser, Subcommand};
use omnidm_shared::amqp::Broker;
use omnidm_shared::config::WorkerConfig;
use omnidm_shared::topology::Topology;
use omnidm_worker::Application;

#[derive(Parser)]
#[command(
    name = "worker",
    version,
    about = "Omniops DM's queue consumer: Meta events in, AI replies out."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: WorkerConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Consume the work queue (the default).
    Run,
    /// Put dead-lettered jobs back on the work queue with a fresh retry budget.
    ReplayDeadLetters {
        /// At most this many.
        #[arg(long, default_value_t = usize::MAX)]
        limit: usize,
    },
    /// Re-encrypt every stored access token with the current ENCRYPTION_KEY (after moving the old key
    /// to ENCRYPTION_KEYS_PREVIOUS). Safe to run while the fleet is live, and to run again.
    RotateKeys,
    /// Create the database if missing and apply the migrations, then exit (a deploy's migration step).
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Err(error) = cli.config.validate() {
        eprintln!("error: {error}");
        std::process::exit(2);
    }
    omnidm_shared::telemetry::init(cli.config.telemetry.log_format);
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let app = Application::build(cli.config).await?;
            tracing::info!(addr = %app.local_addr(), "worker metrics and health listening");
            app.run_until(omnidm_shared::ops::shutdown_signal()).await?;
        }
        Command::ReplayDeadLetters { limit } => {
            let topology = Topology::new(cli.config.amqp.queue_prefix.clone());
            let broker = Broker::start(
                cli.config.amqp.amqp_url.clone(),
                topology.clone(),
                "omnidm-replay",
                1,
            );
            let replayed = omnidm_worker::dead_letters::replay(&broker, &topology, limit).await?;
            broker.close().await;
            println!("replayed {replayed} dead-lettered job(s)");
        }
        Command::Migrate => {
            omnidm_shared::db::connect_and_migrate(&cli.config.database)
                .await?
                .close()
                .await;
            println!("database migrated");
        }
        Command::RotateKeys => {
            let pool = omnidm_shared::db::connect_and_migrate(&cli.config.database).await?;
            let keyring = cli.config.crypto.keyring()?;
            let (rotated, current) = omnidm_worker::store::credentials::rotate_keys(&pool, &keyring).await?;
            pool.close().await;
            println!(
                "re-encrypted {rotated} token(s) with key {}; {current} already used it",
                keyring.current_key_id()
            );
        }
    }
    Ok(())
}
