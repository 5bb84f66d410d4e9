//! `keygate owners list` and `owners show`: tables for people.

use super::{CliError, print_json};
use crate::cli::credits::describe;
use crate::cli::table::{self, or_dash};
use crate::owners::OwnerRecord;
use crate::service::{OwnerService, page};

pub async fn list(owners: &OwnerService, json: bool) -> Result<(), CliError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = owners.list(after, page::MAX).await?;
        all.extend(page);
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    if json {
        print_json(&serde_json::json!({ "owners": all }));
        return Ok(());
    }
    let mut rows = vec![
        ["ID", "NAME", "ENABLED", "LIMITS", "CREDITS"]
            .map(String::from)
            .to_vec(),
    ];
    for o in &all {
        rows.push(vec![
            o.id.clone(),
            o.spec.name.clone(),
            o.spec.enabled.to_string(),
            or_dash(table::limits(&o.spec.rate_limits), ","),
            describe(o.credits.as_ref()),
        ]);
    }
    println!("{}{} owner(s)", table::render(&rows), all.len());
    Ok(())
}

pub fn details(o: &OwnerRecord) -> String {
    let s = &o.spec;
    let lines = [
        ("id", o.id.clone()),
        ("name", s.name.clone()),
        ("enabled", s.enabled.to_string()),
        ("limits", or_dash(table::limits(&s.rate_limits), ", ")),
        ("route caps", table::route_limits(&s.route_limits)),
        (
            "metadata",
            or_dash(s.metadata.iter().map(|(a, b)| format!("{a}={b}")), ", "),
        ),
        ("credits", describe(o.credits.as_ref())),
        ("created", o.created_at.to_rfc3339()),
        ("updated", o.updated_at.to_rfc3339()),
    ];
    lines
        .iter()
        .map(|(a, b)| format!("{a:<11} {b}\n"))
        .collect()
}
