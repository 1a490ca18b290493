//! The `dashflow` binary; everything it does is in the library (`dashflow_cli`).

fn main() -> std::process::ExitCode {
    dashflow_cli::main()
}
