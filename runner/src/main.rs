use clap::Parser;

/// millrace runner: the data plane of a StreamPipeline.
#[derive(Parser, Debug)]
#[command(name = "millrace-runner", version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    Ok(())
}
