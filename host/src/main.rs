fn main() -> std::process::ExitCode {
    sync_host::cli::main()
}
