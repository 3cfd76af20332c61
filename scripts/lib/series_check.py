"""Every series that the Grafana dashboard's panels and the Prometheus alert rules query is
one the services export: the metric names in their PromQL must all appear in the scraped
/metrics texts given (a histogram's _bucket, _sum and _count count as exported with it).
Series that Prometheus itself makes (`up`, `scrape_*`) are allowed.

    python3 scripts/lib/series_check.py DASHBOARD.json RULES.yml -- METRICS.prom...

Exits 1, naming each panel or rule and the missing series, if any is missing; also when a
query yields no metric name at all (the extraction would otherwise pass vacuously).
"""

import json
import re
import sys

# PromQL words that are not metric names when they stand alone.
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2",
}
PROMETHEUS_OWN = re.compile(r"^(up|scrape_[a-z_]+)$")
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    text = re.sub(r"\$\{[^}]*\}|\$[a-zA-Z_]\w*", "1", text)  # Grafana variables
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    # Label lists of aggregations and vector matching.
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in NAME.finditer(text):
        word = match.group(0)
        after = text[match.end():].lstrip()
        before = text[:match.start()]
        if after.startswith("(") or word.lower() in KEYWORDS:
            continue  # a function or an operator
        if before and (before[-1].isdigit() or before[-1] == "."):
            continue  # a number's suffix: 1e3, 0.5m
        names.add(word)
    return names


def dashboard_queries(path: str):
    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    dashboard = json.load(open(path))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query" and isinstance(query, dict):
            # label_values(SELECTOR, LABEL): the selector is the query.
            text = query["query"]
            match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text)
            yield f"variable {variable['name']!r}", match.group(1) if match else text
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"panel {panel['title']!r}", target["expr"]


def rule_queries(path: str):
    import yaml  # Debian's python3-yaml, or pyyaml

    for group in yaml.safe_load(open(path))["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule.get('alert') or rule.get('record')!r}", rule["expr"]


def exported(paths: list[str]) -> set[str]:
    names = set()
    for path in paths:
        for line in open(path):
            if line and not line.startswith("#"):
                match = NAME.match(line)
                if match:
                    names.add(match.group(0))
    for name in list(names):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix):
                names.add(name[: -len(suffix)])
    return names


def main(argv: list[str]) -> int:
    split = argv.index("--")
    dashboard, rules = argv[:split]
    series = exported(argv[split + 1:])
    if not series:
        print("series-check: the scraped metrics are empty", file=sys.stderr)
        return 1
    failures, checked = [], 0
    for where, expr in [*dashboard_queries(dashboard), *rule_queries(rules)]:
        names = metric_names(expr)
        checked += 1
        if not names:
            failures.append(f"{where}: no metric name found in {expr!r}")
        for name in sorted(names):
            if name not in series and not PROMETHEUS_OWN.match(name):
                failures.append(f"{where}: {name} is not exported")
    for failure in failures:
        print(f"series-check: {failure}", file=sys.stderr)
    print(f"series-check: {checked} queries, {len(series)} exported series names, "
          f"{len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
