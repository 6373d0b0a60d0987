//! Prints the StreamPipeline CustomResourceDefinition as YAML.
//!
//! `cargo run -p millrace-api --bin crdgen > crds/millrace.io_streampipelines.yaml`

use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = match millrace_api::crd_yaml() {
        Ok(yaml) => yaml,
        Err(err) => {
            eprintln!("crdgen: cannot render the CRD: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout
        .write_all(yaml.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("crdgen: cannot write the CRD: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
