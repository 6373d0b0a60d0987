//! Set-up and check-up steps of bench/run: topics, the example table, row
//! counts. Kept in Rust so the harness needs no JVM tool start per step.

use clap::{Parser, Subcommand};
use millrace_api::quote_cql_identifier as quote;
use millrace_bench::{World, cql, example_table, kafka};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates a topic (replication 1: the test world has one broker).
    CreateTopic {
        topic: String,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
    },
    DeleteTopic {
        topic: String,
    },
    /// Creates the keyspace and the example pipeline's table (the seed's
    /// columns) under another name.
    CreateTable {
        keyspace: String,
        table: String,
    },
    /// Prints the number of rows of a table.
    Count {
        keyspace: String,
        table: String,
    },
    DropKeyspace {
        keyspace: String,
    },
    /// Drops one table (its rows are counted and no longer needed).
    DropTable {
        keyspace: String,
        table: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let world = World::from_env()?;
    match args.command {
        Command::CreateTopic { topic, partitions } => {
            kafka::create_topic(&world, &topic, partitions).await?;
        }
        Command::DeleteTopic { topic } => kafka::delete_topic(&world, &topic).await?,
        Command::CreateTable { keyspace, table } => {
            let session = cql::session(&world).await?;
            cql::create_table(&session, &keyspace, &example_table(&keyspace, &table)?).await?;
        }
        Command::Count { keyspace, table } => {
            let session = cql::session(&world).await?;
            println!("{}", cql::count_rows(&session, &keyspace, &table).await?);
        }
        Command::DropKeyspace { keyspace } => {
            let session = cql::session(&world).await?;
            let statement = format!("DROP KEYSPACE IF EXISTS {}", quote(&keyspace));
            session.query_unpaged(statement, ()).await?;
        }
        Command::DropTable { keyspace, table } => {
            let session = cql::session(&world).await?;
            let statement = format!(
                "DROP TABLE IF EXISTS {}.{}",
                quote(&keyspace),
                quote(&table)
            );
            session.query_unpaged(statement, ()).await?;
        }
    }
    Ok(())
}
