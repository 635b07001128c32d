"""Parses Prometheus text (stdin) with prometheus_client's own parser, the reference
implementation of the format, and prints what it read as JSON: every family's name and
type, and every sample's name, labels and value. A line it cannot parse fails the run."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append(
        {
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "samples": [
                {"name": s.name, "labels": s.labels, "value": s.value}
                for s in family.samples
            ],
        }
    )
json.dump(families, sys.stdout)
