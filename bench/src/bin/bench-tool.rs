//! Set-up and check-up steps of bench/run: topics, the example table, row
//! counts. Kept in Rust so the harness needs no JVM tool start per step.

use clap::{Parser, Subcommand};
use millrace_api::quote_cql_identifier as quote;
use millrace_api::spec::{ClusteringColumn, ClusteringOrder, ColumnSpec};
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
        /// With a `seq int` column (from `/seq`) as its clustering key: the
        /// table of kafka-produce-ceiling --rows-per-key.
        #[arg(long)]
        clustering: bool,
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
        Command::CreateTable {
            keyspace,
            table,
            clustering,
        } => {
            let session = cql::session(&world).await?;
            let mut spec = example_table(&keyspace, &table)?;
            if clustering {
                spec.columns
                    .push(ColumnSpec::from_pointer("seq", "int", "/seq"));
                spec.clustering_key = vec![ClusteringColumn {
                    name: "seq".into(),
                    order: ClusteringOrder::Asc,
                }];
            }
            cql::create_table(&session, &keyspace, &spec).await?;
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
