//! The `cmafuzz` binary: everything is in the library's `cli` layer.

fn main() -> std::process::ExitCode {
    cmafuzz::cli::main()
}
