//! `pwt config`

use std::path::Path;

use anyhow::Result;

use crate::output::{Format, Style, print_json};
use pwt::exit_code;

/// Show the configuration in effect, each value with the layer it came from.
///
/// Layers: built-in default, pwt.toml, the user config, or a PWT_* variable.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(cwd: &Path, args: ConfigArgs) -> Result<i32> {
    let settings = super::settings(cwd)?;
    let values = settings.sourced_values();
    if args.format == Format::Json {
        let out: pwt::ConfigOut = values
            .into_iter()
            .map(|(key, value, source)| (key, pwt::ConfigValueOut { value, source }))
            .collect();
        print_json(&out)?;
        return Ok(exit_code::OK);
    }
    let style = Style::stdout();
    for (name, file) in [
        ("project", &settings.project_file),
        ("user", &settings.user_file),
    ] {
        let file = file.as_ref().map(|p| p.display().to_string());
        let line = format!(
            "# {:<13} {}",
            format!("{name} file:"),
            file.as_deref().unwrap_or("(none)")
        );
        println!("{}", style.dim(&line));
    }
    let width = values
        .iter()
        .map(|(k, v, _)| k.len() + v.to_string().len() + 3)
        .max()
        .unwrap_or(0);
    for (k, v, source) in values {
        let line = format!("{k} = {v}");
        println!("{line:<width$}  {}", style.dim(&format!("# {source}")));
    }
    if settings.config.ports.services.is_empty() {
        println!(
            "{}",
            style.dim("# no [ports.services]: one port `app` in PORT (main 3000)")
        );
    }
    Ok(exit_code::OK)
}
