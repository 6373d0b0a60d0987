use clap::Parser;

/// millrace operator: reconciles StreamPipelines.
#[derive(Parser, Debug)]
#[command(name = "millrace-operator", version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    Ok(())
}
