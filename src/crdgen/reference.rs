//! Markdown rendering of CRD schemas: a walk over `JSONSchemaProps` producing one row per
//! field, and the renderer of those rows and of each kind's section.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionVersion, JSONSchemaProps,
    JSONSchemaPropsOrArray, JSONSchemaPropsOrBool, ValidationRule,
};

/// Where `metav1.Condition` is described; condition lists link here instead of
/// repeating its six fields in every status table.
pub const CONDITIONS_URL: &str = "https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#typical-status-properties";

/// The fields of `metav1.Condition`, to recognise a condition list in a schema.
const CONDITION_FIELDS: [&str; 6] = [
    "lastTransitionTime",
    "message",
    "observedGeneration",
    "reason",
    "status",
    "type",
];

/// The CEL rule of an immutable field: shown as *immutable* rather than as a rule.
const IMMUTABLE_RULE: &str = "self == oldSelf";

/// How to read the field tables, once for every kind.
pub fn reading_the_tables() -> String {
    format!(
        "\
## Reading the tables

Each kind has the standard `apiVersion`, `kind` and `metadata` (an
[ObjectMeta](https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/))
fields, not repeated below, then one table for `spec` and one for `status`.

- **Field**: the path from the top of the object; nested fields are flattened with dots,
  and `[]` stands for every item of an array (`spec.roles[].role`).
- **Required**: *yes* when the API server rejects the object without it; for a nested
  field, when its parent is present.
- **Limits**: what the API server checks on the field: length in characters, numeric
  range, number of items, pattern, list semantics (`set`: no duplicates; `map keyed by`:
  one item per key) and CEL rules with the message returned when they fail. *immutable*
  is the rule `self == oldSelf`. *each item* applies to every item of an array.
- **Conditions** are standard `metav1.Condition`s (`type`, `status`, `reason`, `message`,
  `lastTransitionTime`, `observedGeneration`), one per `type`, shown as
  `array of Condition` without their sub-fields; see the
  [Kubernetes API conventions]({CONDITIONS_URL}).

"
    )
}

/// One field of a table: everything a reader needs about it, not yet escaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub path: String,
    /// Markdown already (it may hold a link or code spans).
    pub type_name: String,
    pub required: bool,
    /// A code span of the default as JSON.
    pub default: Option<String>,
    /// Markdown already: each a limit, rendered on its own line.
    pub limits: Vec<String>,
    /// Plain text (the doc comment); escaped when rendered.
    pub description: String,
}

/// The heading of a kind's section: the kind, plus the version when it has several.
pub fn section_title(crd: &CustomResourceDefinition, version: &CustomResourceDefinitionVersion) -> String {
    if crd.spec.versions.len() > 1 {
        format!("{} {}", crd.spec.names.kind, version.name)
    } else {
        crd.spec.names.kind.clone()
    }
}

/// GitHub's anchor for a heading: lower case, spaces as hyphens, other punctuation dropped.
pub fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The section of one kind: names, description, object-wide rules, printer columns,
/// then a field table for each top-level property but the standard ones.
pub fn kind_section(crd: &CustomResourceDefinition, version: &CustomResourceDefinitionVersion) -> String {
    let names = &crd.spec.names;
    let title = section_title(crd, version);
    let mut out = format!("## {title}\n\n");
    out.push_str(&format!(
        "- **API version:** `{}/{}`\n- **Kind:** `{}`\n- **Scope:** {}\n",
        crd.spec.group, version.name, names.kind, crd.spec.scope
    ));
    out.push_str(&format!("- **Plural:** `{}`", names.plural));
    if let Some(singular) = &names.singular {
        out.push_str(&format!(", **singular:** `{singular}`"));
    }
    out.push('\n');
    push_list_item(&mut out, "Short names", names.short_names.as_deref());
    push_list_item(&mut out, "Categories", names.categories.as_deref());
    if let Some(subresources) = &version.subresources {
        let present: Vec<String> = [
            ("status", subresources.status.is_some()),
            ("scale", subresources.scale.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(name, _)| name.to_string())
        .collect();
        push_list_item(&mut out, "Subresources", Some(present.as_slice()));
    }
    if version.deprecated == Some(true) {
        let warning = version.deprecation_warning.as_deref().unwrap_or("");
        out.push_str(&format!("- **Deprecated** {}\n", text(warning)));
    }
    out.push('\n');

    let Some(root) = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()) else {
        out.push_str("No schema.\n\n");
        return out;
    };
    if let Some(description) = &root.description {
        out.push_str(&format!("{}\n\n", text(&one_line(description))));
    }
    let rules = root.x_kubernetes_validations.as_deref().unwrap_or_default();
    if !rules.is_empty() {
        out.push_str("Rules on the whole object:\n\n");
        for rule in rules {
            out.push_str(&format!("- {}\n", rule_text(rule)));
        }
        out.push('\n');
    }
    if let Some(columns) = &version.additional_printer_columns {
        out.push_str(&format!("### {title} printer columns\n\n"));
        out.push_str(&printer_columns_table(columns));
    }
    for (name, schema) in root.properties.iter().flatten() {
        if matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        out.push_str(&format!("### {title} {name}\n\n"));
        out.push_str(&field_table(&field_rows(name, schema, is_required(root, name))));
    }
    out
}

/// `- **Label:** `a`, `b`` when there is something to list.
fn push_list_item(out: &mut String, label: &str, values: Option<&[String]>) {
    if let Some(values) = values.filter(|v| !v.is_empty()) {
        let values: Vec<String> = values.iter().map(|v| code(v)).collect();
        out.push_str(&format!("- **{label}:** {}\n", values.join(", ")));
    }
}

/// The columns `kubectl get` shows; *wide* ones only with `-o wide`.
fn printer_columns_table(columns: &[CustomResourceColumnDefinition]) -> String {
    let mut out = String::from("| Column | Type | JSONPath | Description |\n|---|---|---|---|\n");
    for column in columns {
        let mut description = text(&one_line(column.description.as_deref().unwrap_or("")));
        if column.priority.unwrap_or(0) > 0 {
            description = format!("(wide) {description}").trim_end().to_string();
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            cell(&column.name),
            cell(&column.type_),
            cell(&code(&column.json_path)),
            cell(&description)
        ));
    }
    out.push('\n');
    out
}

/// The rows of a field and everything under it, depth first in the schema's order
/// (`properties` is a `BTreeMap`, so alphabetical: the output is stable).
pub fn field_rows(path: &str, schema: &JSONSchemaProps, required: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    push_field(&mut rows, path, schema, required);
    rows
}

fn push_field(rows: &mut Vec<Row>, path: &str, schema: &JSONSchemaProps, required: bool) {
    rows.push(Row {
        path: path.to_string(),
        type_name: field_type(schema),
        required,
        default: schema.default.as_ref().map(|d| code(&d.0.to_string())),
        limits: limits(schema),
        description: one_line(&field_description(schema)),
    });
    // Conditions are summarised by their type; their sub-fields are the same everywhere.
    if !is_condition_list(schema) {
        push_children(rows, path, schema);
    }
}

/// The rows under a field: its properties, or those of its items (`path[]`) or of its
/// map values (`path.<key>`).
fn push_children(rows: &mut Vec<Row>, path: &str, schema: &JSONSchemaProps) {
    for (name, child) in schema.properties.iter().flatten() {
        push_field(rows, &format!("{path}.{name}"), child, is_required(schema, name));
    }
    if let Some(items) = items(schema) {
        push_children(rows, &format!("{path}[]"), items);
    }
    if let Some(values) = map_values(schema) {
        push_children(rows, &format!("{path}.<key>"), values);
    }
}

fn is_required(schema: &JSONSchemaProps, name: &str) -> bool {
    schema.required.iter().flatten().any(|r| r == name)
}

/// The schema of an array's items (a tuple of schemas is not something we generate).
fn items(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match &schema.items {
        Some(JSONSchemaPropsOrArray::Schema(items)) => Some(items),
        _ => None,
    }
}

/// The schema of a map's values (`additionalProperties`).
fn map_values(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match &schema.additional_properties {
        Some(JSONSchemaPropsOrBool::Schema(values)) => Some(values),
        _ => None,
    }
}

/// Whether this is a list of `metav1.Condition`: an array of objects with its six fields.
pub fn is_condition_list(schema: &JSONSchemaProps) -> bool {
    items(schema)
        .and_then(|items| items.properties.as_ref())
        .is_some_and(|props| props.keys().map(String::as_str).eq(CONDITION_FIELDS))
}

/// The field's doc comment; for an array without one, its items'.
fn field_description(schema: &JSONSchemaProps) -> String {
    schema
        .description
        .clone()
        .or_else(|| items(schema).and_then(|i| i.description.clone()))
        .unwrap_or_default()
}

/// `string (date-time)`, `array of string, one of `a`, `b``, `integer (int32), nullable`.
pub fn field_type(schema: &JSONSchemaProps) -> String {
    let mut name = value_type(schema);
    if schema.nullable == Some(true) {
        name.push_str(", nullable");
    }
    name
}

/// The type of a value, without nullability (which only matters on the field itself).
fn value_type(schema: &JSONSchemaProps) -> String {
    if is_condition_list(schema) {
        return format!("array of [Condition]({CONDITIONS_URL})");
    }
    let mut name = match schema.type_.as_deref() {
        _ if schema.x_kubernetes_int_or_string == Some(true) => "integer or string".to_string(),
        Some("array") => match items(schema) {
            Some(items) => format!("array of {}", value_type(items)),
            None => "array".to_string(),
        },
        Some("object") => match map_values(schema) {
            Some(values) => format!("map of string to {}", value_type(values)),
            None if schema.x_kubernetes_preserve_unknown_fields == Some(true) => "object (any fields)".to_string(),
            None => "object".to_string(),
        },
        Some(other) => other.to_string(),
        None => "any".to_string(),
    };
    if let Some(format) = &schema.format {
        name.push_str(&format!(" ({format})"));
    }
    if let Some(values) = schema.enum_.as_ref().filter(|v| !v.is_empty()) {
        let values: Vec<String> = values.iter().map(|v| code(&json_scalar(&v.0))).collect();
        name.push_str(&format!(", one of {}", values.join(", ")));
    }
    name
}

/// A JSON value as written in a schema: strings without their quotes.
fn json_scalar(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Everything the API server checks on a field, each as one Markdown fragment.
pub fn limits(schema: &JSONSchemaProps) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(length) = span("length", schema.min_length, schema.max_length) {
        found.push(length);
    }
    if let Some(range) = range(schema) {
        found.push(range);
    }
    if let Some(items) = span("items", schema.min_items, schema.max_items) {
        found.push(items);
    }
    if schema.unique_items == Some(true) {
        found.push("unique items".to_string());
    }
    if let Some(pattern) = &schema.pattern {
        found.push(format!("pattern {}", code(pattern)));
    }
    match (
        schema.x_kubernetes_list_type.as_deref(),
        &schema.x_kubernetes_list_map_keys,
    ) {
        (Some("map"), Some(keys)) => {
            let keys: Vec<String> = keys.iter().map(|k| code(k)).collect();
            found.push(format!("map keyed by {}", keys.join(", ")));
        }
        (Some(list_type), _) => found.push(list_type.to_string()),
        (None, _) => {}
    }
    if let Some(map_type) = &schema.x_kubernetes_map_type {
        found.push(format!("{map_type} map"));
    }
    for rule in schema.x_kubernetes_validations.iter().flatten() {
        found.push(rule_text(rule));
    }
    // What applies to every item, e.g. the length of each string of a list (an object
    // item's fields get rows of their own).
    if let Some(items) = items(schema).filter(|_| !is_condition_list(schema)) {
        let each = limits(items);
        if !each.is_empty() {
            found.push(format!("each item: {}", each.join(", ")));
        }
    }
    found
}

/// `length 1–63`, `length ≤ 256`, `items ≥ 1`: bounds of a count.
fn span(what: &str, min: Option<i64>, max: Option<i64>) -> Option<String> {
    match (min, max) {
        (Some(min), Some(max)) => Some(format!("{what} {min}–{max}")),
        (Some(min), None) => Some(format!("{what} ≥ {min}")),
        (None, Some(max)) => Some(format!("{what} ≤ {max}")),
        (None, None) => None,
    }
}

/// `range 8–128`, or the bounds one by one when one of them is exclusive or absent.
fn range(schema: &JSONSchemaProps) -> Option<String> {
    let exclusive_min = schema.exclusive_minimum == Some(true);
    let exclusive_max = schema.exclusive_maximum == Some(true);
    match (schema.minimum, schema.maximum) {
        (Some(min), Some(max)) if !exclusive_min && !exclusive_max => Some(format!("range {min}–{max}")),
        (None, None) => None,
        (min, max) => {
            let lower = min.map(|m| format!("{} {m}", if exclusive_min { ">" } else { "≥" }));
            let upper = max.map(|m| format!("{} {m}", if exclusive_max { "<" } else { "≤" }));
            Some(format!(
                "value {}",
                [lower, upper].into_iter().flatten().collect::<Vec<_>>().join(", ")
            ))
        }
    }
}

/// A CEL rule and the message the API server returns when it fails; `self == oldSelf`
/// reads better as *immutable*.
pub fn rule_text(rule: &ValidationRule) -> String {
    if rule.rule == IMMUTABLE_RULE {
        return "immutable".to_string();
    }
    let mut out = format!("rule {}", code(&rule.rule));
    if let Some(message) = &rule.message {
        out.push_str(&format!(": “{}”", text(message)));
    } else if let Some(expression) = &rule.message_expression {
        out.push_str(&format!(": message {}", code(expression)));
    }
    out
}

/// A Markdown table of rows.
pub fn field_table(rows: &[Row]) -> String {
    let mut out = String::from("| Field | Type | Required | Default | Limits | Description |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            cell(&code(&row.path)),
            cell(&row.type_name),
            if row.required { "yes" } else { "—" },
            cell(row.default.as_deref().unwrap_or("—")),
            cell(&if row.limits.is_empty() {
                "—".to_string()
            } else {
                row.limits.join("<br>")
            }),
            cell(&text(&row.description)),
        ));
    }
    out.push('\n');
    out
}

/// Doc comments are wrapped at 90 columns; a table cell is one line.
pub fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

/// Makes Markdown safe for a table cell: one line, and `|` escaped (even in code spans,
/// where GitHub's tables need it too).
pub fn cell(markdown: &str) -> String {
    one_line(markdown).replace('|', "\\|")
}

/// Prose from a doc comment as Markdown: `<` outside code spans escaped, so that
/// `<name>-owner` is not taken for an HTML tag and dropped.
pub fn text(prose: &str) -> String {
    prose
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 0 {
                part.replace('<', "&lt;")
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

/// A code span of any text: fenced with more backticks than it holds in a row (an
/// e-mail pattern holds one), padded when it starts or ends with one.
pub fn code(s: &str) -> String {
    let longest_run = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest_run + 1);
    if longest_run > 0 {
        format!("{fence} {s} {fence}")
    } else {
        format!("{fence}{s}{fence}")
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
    use serde_json::json;

    use super::{cell, code, field_rows, field_type, limits, text};

    fn schema(value: serde_json::Value) -> JSONSchemaProps {
        serde_json::from_value(value).expect("a JSONSchemaProps")
    }

    /// (path, required) of every row, the part of a row that flattening decides.
    fn paths(rows: &[super::Row]) -> Vec<(&str, bool)> {
        rows.iter().map(|r| (r.path.as_str(), r.required)).collect()
    }

    #[test]
    fn nested_fields_are_flattened_with_dots_and_array_brackets() {
        let spec = schema(json!({
            "type": "object",
            "required": ["accountRef"],
            "properties": {
                "accountRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}}
                },
                "roles": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["role"],
                        "properties": {
                            "role": {"type": "string"},
                            "grant": {"type": "array", "items": {"type": "string"}}
                        }
                    }
                },
                "displayName": {"type": "string", "nullable": true}
            }
        }));
        assert_eq!(
            paths(&field_rows("spec", &spec, true)),
            [
                ("spec", true),
                ("spec.accountRef", true),
                ("spec.accountRef.name", true),
                ("spec.displayName", false),
                ("spec.roles", false),
                ("spec.roles[].grant", false),
                ("spec.roles[].role", true),
            ]
        );
    }

    #[test]
    fn condition_lists_are_summarised_not_expanded() {
        let fields = [
            "lastTransitionTime",
            "message",
            "observedGeneration",
            "reason",
            "status",
            "type",
        ];
        let properties: serde_json::Map<_, _> = fields
            .iter()
            .map(|f| (f.to_string(), json!({"type": "string"})))
            .collect();
        let status = schema(json!({
            "type": "object",
            "properties": {
                "conditions": {
                    "type": "array",
                    "description": "Conditions: Ready.",
                    "items": {"type": "object", "properties": properties},
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"]
                }
            }
        }));
        let rows = field_rows("status", &status, false);
        assert_eq!(paths(&rows), [("status", false), ("status.conditions", false)]);
        assert!(
            rows[1].type_name.starts_with("array of [Condition]("),
            "{}",
            rows[1].type_name
        );
        assert_eq!(rows[1].limits, ["map keyed by `type`"]);
        assert_eq!(rows[1].description, "Conditions: Ready.");
    }

    #[test]
    fn types_carry_format_enum_values_and_nullability() {
        assert_eq!(
            field_type(&schema(json!({"type": "integer", "format": "int64", "nullable": true}))),
            "integer (int64), nullable"
        );
        assert_eq!(
            field_type(&schema(
                json!({"type": "array", "items": {"type": "string", "enum": ["org", "admin"]}})
            )),
            "array of string, one of `org`, `admin`"
        );
    }

    #[test]
    fn limits_name_lengths_ranges_items_patterns_and_rules() {
        let name = schema(json!({
            "type": "string",
            "minLength": 1,
            "maxLength": 63,
            "pattern": "^[a-z]+$",
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "name is immutable"},
                {"rule": "self != 'x'", "message": "not <x>"}
            ]
        }));
        assert_eq!(
            limits(&name),
            [
                "length 1–63",
                "pattern `^[a-z]+$`",
                "immutable",
                "rule `self != 'x'`: “not &lt;x>”"
            ]
        );
        let list = schema(json!({
            "type": "array",
            "maxItems": 4,
            "x-kubernetes-list-type": "set",
            "items": {"type": "integer", "minimum": 8.0, "maximum": 128.0}
        }));
        assert_eq!(limits(&list), ["items ≤ 4", "set", "each item: range 8–128"]);
    }

    #[test]
    fn cells_are_one_line_with_pipes_escaped() {
        assert_eq!(cell("a | b\n  c `x|y`"), r"a \| b c `x\|y`");
    }

    #[test]
    fn angle_brackets_are_escaped_outside_code_spans_only() {
        assert_eq!(
            text("the Secret <name>-user-secret, `<org>-default`"),
            "the Secret &lt;name>-user-secret, `<org>-default`"
        );
    }

    #[test]
    fn code_spans_hold_backticks() {
        assert_eq!(code("^[a-z]+$"), "`^[a-z]+$`");
        assert_eq!(code("^[_`{|}~-]+@"), "`` ^[_`{|}~-]+@ ``");
    }

    #[test]
    fn the_reference_covers_every_kind_in_order_without_standard_fields() {
        let doc = crate::crdgen::api_reference();
        let positions: Vec<usize> = crate::api::crds()
            .iter()
            .map(|crd| {
                doc.find(&format!("\n## {}\n", crd.spec.names.kind))
                    .expect("a section per kind")
            })
            .collect();
        assert!(positions.is_sorted(), "kinds out of order: {positions:?}");
        assert!(doc.contains("| `spec.accountRef.name` | string | yes |"));
        assert!(!doc.contains("| `metadata"));
        assert!(!doc.contains("| `apiVersion"));
        assert_eq!(doc, crate::crdgen::api_reference(), "the output is not deterministic");
    }
}
