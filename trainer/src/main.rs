use std::process::ExitCode;

fn main() -> ExitCode {
    match loam::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One readable message: what went wrong, then each cause, then what to do.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
