#!/usr/bin/env python3
"""Reads the chart's rendered webhook template on stdin and prints its
ValidatingWebhookConfiguration redirected to a local operator: named NAME, calling URL,
exempting USER (the local operator's identity) instead of the chart's ServiceAccount and,
with LABEL, covering only the namespaces labelled ce.tenancy.io/webhook=LABEL (tests).

    helm template ... --show-only templates/webhook.yaml | local-webhook.py NAME URL USER [LABEL]

`make dev` and the integration tests both use it, so that they run the chart's own rules,
failure policy, timeout and matchConditions.
"""
import json
import sys

name, url, user = sys.argv[1:4]
label = sys.argv[4] if len(sys.argv) > 4 else None
documents = sys.stdin.read().split("\n---")
config = next(d for d in documents if "kind: ValidatingWebhookConfiguration" in d)
lines = []
for line in config.splitlines():
    if line.startswith("  name:"):
        line = "  name: " + name
    elif "request.userInfo.username != 'system:serviceaccount:" in line and "kube-system" not in line:
        indent = line[: len(line) - len(line.lstrip())]
        line = f"{indent}expression: \"request.userInfo.username != '{user}'\""
    lines.append(line)
text = "\n".join(lines) + "\n"
# The Service reference becomes a URL; a label limits it to some namespaces.
start = text.index("    clientConfig:")
end = text.index("    matchConditions:")
selector = f"    namespaceSelector: {{matchLabels: {{ce.tenancy.io/webhook: {json.dumps(label)}}}}}\n" if label else ""
text = text[:start] + f"    clientConfig:\n      url: {json.dumps(url)}\n" + selector + text[end:]
sys.stdout.write(text)
