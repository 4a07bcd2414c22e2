fn main() -> std::process::ExitCode {
    subrelay::cli::run()
}
