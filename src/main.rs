//! The `ferroflow` command.

fn main() -> std::process::ExitCode {
    ferroflow_cli::main()
}
