//! The `StreamPipeline` API shared by the operator and the runner.
