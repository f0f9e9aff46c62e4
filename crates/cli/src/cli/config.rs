//! `pwt config`

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::exit_codes;
use super::output::{Format, Style, print_json};

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
        let map: serde_json::Map<_, _> = values
            .into_iter()
            .map(|(k, v, s)| (k, json!({ "value": v, "source": s })))
            .collect();
        print_json(&serde_json::Value::Object(map));
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
