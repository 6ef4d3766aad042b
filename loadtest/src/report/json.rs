//! The JSON result file.

use std::path::Path;

use super::RunResult;

pub fn write(path: &Path, run: &RunResult) -> Result<(), String> {
    let text = serde_json::to_string_pretty(run).map_err(|e| e.to_string())?;
    super::markdown::write_file(path, &text)
}

pub fn read(path: &Path) -> Result<RunResult, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
