//! Targets judged against the ceilings, and the report in Markdown and JSON.

use super::*;

pub(super) fn find<'a>(measures: &'a [Measure], key: &str) -> Option<&'a Measure> {
    measures.iter().find(|m| m.key == key)
}

pub(super) fn judge(ceilings: &[Measure], scenarios: &[Measure], memory: &[Memory]) -> Vec<Target> {
    let mut targets = Vec::new();
    let mut ratio = |what: &str, key: &str, ceiling: &str, goal: f64, errors_matter: bool| {
        // The reference is a ceiling or, for one scenario against another, a scenario.
        let reference = find(ceilings, ceiling).or_else(|| find(scenarios, ceiling));
        let (Some(measured), Some(ceiling)) = (find(scenarios, key), reference) else {
            return;
        };
        let ratio = measured.throughput / ceiling.throughput;
        let clean = !errors_matter || measured.errors == 0;
        targets.push(Target {
            what: what.to_owned(),
            goal: format!(
                ">= {:.0}% of {}{}",
                goal * 100.0,
                ceiling.name,
                if errors_matter { ", 0 errors" } else { "" }
            ),
            measured: format!(
                "{:.0} {} = {:.1}% of {:.0} {}{}",
                measured.throughput,
                measured.unit,
                ratio * 100.0,
                ceiling.throughput,
                ceiling.unit,
                if errors_matter {
                    format!(", {} errors", measured.errors)
                } else {
                    String::new()
                }
            ),
            met: ratio >= goal && clean,
        });
    };
    ratio(
        "cached product read through the gateway, rate limits on",
        "product_read",
        "ceiling_one_hop",
        0.50,
        false,
    );
    ratio(
        "cached product read at the catalog directly",
        "catalog_direct",
        "ceiling_in_memory",
        0.50,
        false,
    );
    ratio(
        "cached list page through the gateway",
        "product_list",
        "product_read",
        0.60,
        false,
    );
    ratio("order placement", "orders", "ceiling_pgbench", 0.15, true);
    ratio(
        "backlog drain",
        "backlog_drain",
        "ceiling_pgbench",
        0.25,
        false,
    );
    ratio("login", "login", "ceiling_bcrypt", 0.95, false);
    if let Some(read) = find(scenarios, "product_read")
        && let Some(commands) = read.redis_per_request()
    {
        targets.push(Target {
            what: "Redis commands per cached read through the gateway".into(),
            goal: "<= 0.1".into(),
            measured: format!("{commands:.3}"),
            met: commands <= 0.1,
        });
    }
    let mut latency = |what: &str, key: &str, p99: bool, goal: f64| {
        let Some(measured) = find(scenarios, key) else {
            return;
        };
        let value = if p99 {
            measured.p99_ms
        } else {
            measured.p50_ms
        }
        .unwrap_or(f64::MAX);
        targets.push(Target {
            what: what.to_owned(),
            goal: format!("{} <= {goal:.0} ms", if p99 { "p99" } else { "p50" }),
            measured: format!("{value:.1} ms over {} orders", measured.count),
            met: value <= goal && measured.count > 0,
        });
    };
    latency("order to order.paid, idle", "paid_idle", false, 12.0);
    latency(
        "order to order.paid, under load",
        "paid_under_load",
        true,
        250.0,
    );
    if let Some(cost) = find(scenarios, "orders").and_then(|m| m.cost.as_ref()) {
        targets.push(Target {
            what: "commits per order, placed and paid, under the order load".into(),
            goal: "<= 8".into(),
            measured: format!(
                "{:.2} ({:.2} as counted, over {} orders)",
                cost.commits_per_order, cost.commits_per_order_raw, cost.orders
            ),
            met: cost.orders > 0 && cost.commits_per_order <= 8.0,
        });
        let statements = cost.statements_per_order;
        targets.push(Target {
            what: "statements per order, placed and paid, under the order load".into(),
            goal: "<= 60".into(),
            measured: statements.map_or_else(
                || "not counted by these binaries".to_owned(),
                |s| format!("{s:.1}"),
            ),
            met: statements.is_some_and(|s| s <= 60.0),
        });
        if let Some(waits) = &cost.object_lock_waits {
            targets.push(Target {
                what: "database-object lock waits during the order load".into(),
                goal: "<= 0".into(),
                measured: format!(
                    "waiters in {} of {} samples (peak {})",
                    waits.samples_with_waiters, waits.samples, waits.peak_waiters
                ),
                met: waits.samples_with_waiters == 0,
            });
        }
    }
    let idle: f64 = memory.iter().map(|m| m.idle_mib).sum();
    let peak: f64 = memory.iter().map(|m| m.peak_mib).sum();
    targets.push(Target {
        what: "memory, all processes, idle".into(),
        goal: "< 100 MiB".into(),
        measured: format!("{idle:.1} MiB"),
        met: idle < 100.0,
    });
    targets.push(Target {
        what: "memory, all processes, under load".into(),
        goal: "< 300 MiB".into(),
        measured: format!("{peak:.1} MiB (sum of each process's peak)"),
        met: peak < 300.0,
    });
    targets
}

pub(super) fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

/// The report as markdown tables.
pub fn markdown(report: &Report) -> String {
    let mut out = format!("# Benchmark, {}\n\n", report.date);
    for (key, value) in &report.machine {
        out.push_str(&format!("- **{key}**: {value}\n"));
    }
    for (key, value) in &report.setup {
        out.push_str(&format!("- {key}: {value}\n"));
    }
    out.push_str("\n## Targets\n\n| Target | Goal | Measured | Met |\n|---|---|---|---|\n");
    for target in &report.targets {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            target.what,
            target.goal,
            target.measured,
            if target.met { "yes" } else { "**no**" }
        ));
    }
    for (title, measures) in [
        ("System", &report.scenarios),
        ("Ceilings of this machine", &report.ceilings),
    ] {
        out.push_str(&format!(
            "\n## {title}\n\n| Measure | Driver | Throughput | p50 ms | p95 ms | p99 ms | Count | Errors | CPU % per process |\n|---|---|---|---|---|---|---|---|---|\n"
        ));
        for m in measures {
            let throughput = if m.unit.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.0} {}", m.throughput, m.unit)
            };
            let cpu: Vec<String> = m
                .cpu_percent
                .iter()
                .map(|(p, c)| format!("{p} {c:.0}"))
                .collect();
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                m.name,
                m.tool,
                throughput,
                cell(m.p50_ms),
                cell(m.p95_ms),
                cell(m.p99_ms),
                m.count,
                m.errors,
                cpu.join(", ")
            ));
        }
    }
    out.push_str(
        "\n## What one request costs\n\nCPU time per request of each busy process, and the \
         commands the system's redis-server ran per request (`INFO commandstats`, everything \
         the system sent meanwhile).\n\n| Measure | CPU µs per request | Redis commands per \
         request |\n|---|---|---|\n",
    );
    for m in &report.scenarios {
        let Some(commands) = &m.redis_commands_per_request else {
            continue;
        };
        let cpu: Vec<String> = m
            .cpu_percent
            .iter()
            .filter(|(_, percent)| **percent >= 1.0)
            .filter_map(|(p, _)| Some(format!("{p} {:.1}", m.cpu_us_per_operation(p)?)))
            .collect();
        let mut by_command: Vec<(&String, &f64)> = commands.iter().collect();
        by_command.sort_by(|a, b| b.1.total_cmp(a.1));
        let by_command: Vec<String> = by_command
            .iter()
            .take(4)
            .map(|(c, v)| format!("{c} {v:.3}"))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {:.3} ({}) |\n",
            m.name,
            cpu.join(", "),
            m.redis_per_request().unwrap_or_default(),
            by_command.join(", ")
        ));
    }
    out.push_str(&format!(
        "\n## The cost of a write\n\nPer order placed and paid, the quiet system's own work \
         ({:.1} commits/s, {:.1} statements/s) taken out; commits as counted in brackets.\n\n\
         | Scenario | Orders | Commits per order | Statements per order | By service \
         | Object-lock waits |\n|---|---|---|---|---|---|\n",
        report.background.commits_per_second, report.background.statements_per_second
    ));
    for m in &report.scenarios {
        let Some(cost) = &m.cost else { continue };
        let by_service: Vec<String> = cost
            .statements_by_service
            .iter()
            .map(|(s, v)| format!("{s} {v:.1}"))
            .collect();
        let waits = cost.object_lock_waits.as_ref().map_or_else(
            || "–".to_owned(),
            |w| {
                format!(
                    "{} of {} samples, peak {}",
                    w.samples_with_waiters, w.samples, w.peak_waiters
                )
            },
        );
        out.push_str(&format!(
            "| {} | {} | {:.2} ({:.2}) | {} | {} | {} |\n",
            m.name,
            cost.orders,
            cost.commits_per_order,
            cost.commits_per_order_raw,
            cost.statements_per_order
                .map_or_else(|| "–".to_owned(), |s| format!("{s:.1}")),
            by_service.join(", "),
            waits
        ));
    }
    let probes: Vec<&Measure> = report
        .scenarios
        .iter()
        .filter(|m| !m.stages.is_empty())
        .collect();
    if !probes.is_empty() {
        out.push_str("\n## Where an order's time goes (medians, ms)\n\n| Step |");
        for m in &probes {
            out.push_str(&format!(" {} |", m.name));
        }
        out.push_str(&format!("\n|---|{}\n", "---|".repeat(probes.len())));
        for (index, stage) in probes[0].stages.iter().enumerate() {
            out.push_str(&format!("| {} |", stage.step));
            for m in &probes {
                out.push_str(&format!(
                    " {} |",
                    cell(m.stages.get(index).and_then(|s| s.p50_ms))
                ));
            }
            out.push('\n');
        }
    }
    out.push_str("\n## Memory (resident)\n\n| Process | Idle MiB | Peak MiB |\n|---|---|---|\n");
    for m in &report.memory {
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} |\n",
            m.process, m.idle_mib, m.peak_mib
        ));
    }
    out
}

/// Writes `<date>.json` and `<date>.md` into the results folder; returns the JSON's path.
pub fn write(config: &Config, report: &Report) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&config.out_dir)?;
    let stem = report.date.replace(':', "-");
    let json = config.out_dir.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(report)? + "\n")?;
    std::fs::write(config.out_dir.join(format!("{stem}.md")), markdown(report))?;
    Ok(json)
}
