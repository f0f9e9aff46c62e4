//! `pwt config`

use std::path::Path;

use anyhow::Result;

use crate::exit_codes;
use crate::output::{Format, Style, print_json};

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
    let session = super::open(cwd)?;
    let values = session.settings.sourced_values();
    if args.format == Format::Json {
        let out: pwt::ConfigOut = values
            .into_iter()
            .map(|(key, value, source)| (key, pwt::ConfigValueOut { value, source }))
            .collect();
        print_json(&serde_json::to_value(out)?);
        return Ok(exit_codes::OK);
    }
    let style = Style::stdout();
    let file = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or("(none)".to_owned(), |p| p.display().to_string())
    };
    println!(
        "{}",
        style.dim(&format!(
            "# project file: {}",
            file(&session.settings.project_file)
        ))
    );
    println!(
        "{}",
        style.dim(&format!(
            "# user file:    {}",
            file(&session.settings.user_file)
        ))
    );
    let width = values
        .iter()
        .map(|(k, v, _)| k.len() + v.to_string().len() + 3)
        .max()
        .unwrap_or(0);
    for (k, v, source) in values {
        let line = format!("{k} = {v}");
        println!("{line:<width$}  {}", style.dim(&format!("# {source}")));
    }
    if session.project.config().ports.services.is_empty() {
        println!(
            "{}",
            style.dim("# no [ports.services]: one port `app` in PORT (main 3000)")
        );
    }
    Ok(exit_codes::OK)
}
