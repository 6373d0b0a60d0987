//! Whether a live object still holds what the operator applied, read from
//! its server-side apply bookkeeping (`metadata.managedFields`).
//!
//! The operator applies with the field manager [`FIELD_MANAGER`]. When
//! anyone else changes (or removes) a field the operator set, by
//! `kubectl edit`, a merge patch or an apply of their own, the apiserver
//! moves that field out of the operator's managed set. So an object is in
//! sync when every field of the desired object is still in the operator's
//! set (and still present in the object): no value comparison, which
//! apiserver defaulting and normalisation (quantities, ports) would fool,
//! and no write on a steady-state resync.
//!
//! Lists follow their merge strategy as the managed set records it: an
//! atomic list (`args`, a Role's `rules`, a RoleBinding's `subjects`) is
//! one field, so any change to it is seen; an associative list
//! (`containers`, `env`, `ports`) has one entry per key. What others *add*
//! beside the operator's fields (a new label, env var or ConfigMap key)
//! is theirs and stays: server-side apply does not remove fields it does
//! not own.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use serde_json::{Map, Value};

use super::FIELD_MANAGER;

/// The first field of `desired` (the object the operator applies) that
/// `live` (the object as the apiserver returns it, as JSON) no longer holds
/// as the operator's, as a path such as `spec.template.spec.containers[name=runner].image`;
/// `None` when it holds them all.
pub fn drifted(desired: &Value, live: &Value) -> Option<String> {
    let Some(fields) = operator_fields(live) else {
        return Some(format!("(no fields applied by {FIELD_MANAGER})"));
    };
    let Some(desired) = desired.as_object() else {
        return Some("(not an object)".to_owned());
    };
    // Identity and type are not managed fields; status is not applied.
    let mut want = desired.clone();
    for k in ["apiVersion", "kind", "status"] {
        want.remove(k);
    }
    if let Some(Value::Object(meta)) = want.get_mut("metadata") {
        for k in [
            "name",
            "namespace",
            "generateName",
            "uid",
            "resourceVersion",
        ] {
            meta.remove(k);
        }
    }
    covers_map(&want, &fields, live, "").err()
}

/// Whether `live` holds every field of `desired` as the operator's.
pub fn holds_desired(desired: &Value, live: &Value) -> bool {
    drifted(desired, live).is_none()
}

/// The union of the operator's applied field sets (`fieldsV1`), for the
/// main resource (not a subresource such as `status` or `scale`).
fn operator_fields(live: &Value) -> Option<Map<String, Value>> {
    let entries = live.pointer("/metadata/managedFields")?.as_array()?;
    let mut merged: Option<Map<String, Value>> = None;
    for e in entries {
        let manager = e.get("manager").and_then(Value::as_str);
        let operation = e.get("operation").and_then(Value::as_str);
        let subresource = e.get("subresource").and_then(Value::as_str).unwrap_or("");
        if manager != Some(FIELD_MANAGER) || operation != Some("Apply") || !subresource.is_empty() {
            continue;
        }
        match e.get("fieldsV1") {
            Some(Value::Object(f)) => merge(merged.get_or_insert_with(Map::new), f),
            // As the watch caches keep it ([`keep_for_drift`]).
            Some(Value::String(text)) => {
                if let Ok(f) = serde_json::from_str::<Map<String, Value>>(text) {
                    merge(merged.get_or_insert_with(Map::new), &f);
                }
            }
            _ => {}
        }
    }
    merged
}

/// The controller-manager's writes (a Deployment's revision annotation,
/// its status) are rollout, not a hand's.
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// Whether a managed-fields entry is a hand's: a manager other than the
/// operator and the controller-manager set fields of the object itself
/// (`kubectl create`, `edit`, `apply`, another controller).
pub fn by_hand(entry: &ManagedFieldsEntry) -> bool {
    let manager = entry.manager.as_deref().unwrap_or_default();
    manager != FIELD_MANAGER
        && manager != CONTROLLER_MANAGER
        && entry.subresource.as_deref() != Some("status")
}

/// What a cached copy of an owned object keeps of its managed fields: only
/// the operator's entries, each field set as its JSON text. [`drifted`]
/// reads nothing else, and as a tree of `serde_json` values a Deployment's
/// field set (2.6 kB of JSON) took several times the memory of its text:
/// at 1,000 pipelines the caches are most of the operator's memory.
pub fn keep_for_drift(meta: &mut ObjectMeta) {
    if let Some(entries) = meta.managed_fields.as_mut() {
        entries.retain(|e| e.manager.as_deref() == Some(FIELD_MANAGER));
        for e in entries {
            if let Some(FieldsV1(fields)) = e.fields_v1.as_mut()
                && !fields.is_string()
            {
                *fields = Value::String(fields.to_string());
            }
        }
    }
}

fn merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (Some(_), _) => {}
            (None, _) => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

type Walk = Result<(), String>;

/// Every field of the desired map is managed (`f:NAME`) and present.
fn covers_map(
    want: &Map<String, Value>,
    fields: &Map<String, Value>,
    live: &Value,
    at: &str,
) -> Walk {
    // An atomic map (an owner reference) is one field, owned whole: its
    // entry is empty, without even the `.` of a map whose members are
    // owned one by one.
    if fields.is_empty() {
        return Ok(());
    }
    for (name, value) in want {
        if value.is_null() {
            continue;
        }
        let path = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}.{name}")
        };
        // An empty list or map (a Role without rules) is not recorded as a
        // managed field: it holds while the object has nothing there.
        if is_empty(value) {
            if live.get(name).is_some_and(|v| !v.is_null() && !is_empty(v)) {
                return Err(path);
            }
            continue;
        }
        let (Some(Value::Object(sub)), Some(live_value)) =
            (fields.get(&format!("f:{name}")), live.get(name))
        else {
            return Err(path);
        };
        covers(value, sub, live_value, &path)?;
    }
    Ok(())
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn covers(want: &Value, fields: &Map<String, Value>, live: &Value, at: &str) -> Walk {
    match want {
        Value::Object(m) => covers_map(m, fields, live, at),
        Value::Array(items) => covers_list(items, fields, live, at),
        // A scalar: owned (the parent found its `f:` entry) and present.
        _ => Ok(()),
    }
}

/// A list: atomic (owned whole: no per-item entries), a set (`v:VALUE`
/// entries) or associative (`k:{KEY}` entries).
fn covers_list(items: &[Value], fields: &Map<String, Value>, live: &Value, at: &str) -> Walk {
    let granular = fields
        .keys()
        .any(|k| k.starts_with("k:") || k.starts_with("v:") || k.starts_with("i:"));
    if !granular {
        return if live.is_array() {
            Ok(())
        } else {
            Err(at.to_owned())
        };
    }
    let live_items = live.as_array().map(Vec::as_slice).unwrap_or_default();
    for item in items {
        let found = match item {
            Value::Object(m) => fields.iter().find_map(|(k, sub)| {
                let key = k.strip_prefix("k:")?;
                let (Ok(Value::Object(key)), Value::Object(sub)) =
                    (serde_json::from_str::<Value>(key), sub)
                else {
                    return None;
                };
                if !matches_key(&key, m) {
                    return None;
                }
                let path = format!("{at}[{}]", key_text(&key));
                let Some(l) = live_items
                    .iter()
                    .find(|l| l.as_object().is_some_and(|l| matches_key(&key, l)))
                else {
                    return Some(Err(path));
                };
                Some(covers_map(m, sub, l, &path))
            }),
            scalar => (fields.contains_key(&format!("v:{scalar}"))
                && live_items.iter().any(|l| l == scalar))
            .then_some(Ok(())),
        };
        match found {
            Some(Ok(())) => {}
            Some(Err(path)) => return Err(path),
            None => return Err(format!("{at}[{item}]")),
        }
    }
    Ok(())
}

fn key_text(key: &Map<String, Value>) -> String {
    key.iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// An item has the key when every key field it sets has the key's value
/// (a key field it leaves out, the apiserver defaulted: `protocol`).
fn matches_key(key: &Map<String, Value>, item: &Map<String, Value>) -> bool {
    let mut any = false;
    for (k, v) in key {
        match item.get(k) {
            Some(x) if x == v => any = true,
            Some(_) => return false,
            None => {}
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_hand_is_anyone_but_the_operator_and_the_controller_manager_outside_status() {
        let entry = |manager: &str, subresource: Option<&str>| ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            subresource: subresource.map(str::to_owned),
            ..Default::default()
        };
        assert!(by_hand(&entry("kubectl-create", None)));
        assert!(by_hand(&entry("kubectl-edit", None)));
        assert!(!by_hand(&entry(FIELD_MANAGER, None)));
        assert!(!by_hand(&entry(CONTROLLER_MANAGER, None)));
        assert!(!by_hand(&entry("kubectl-edit", Some("status"))));
    }

    /// A Deployment as the apiserver returns it after the operator's apply
    /// (defaults added, the controller's revision annotation beside).
    fn live() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "p-sink",
                "namespace": "data",
                "labels": {"app": "p", "extra": "by-hand"},
                "ownerReferences": [{"apiVersion": "millrace.io/v1alpha1", "kind": "StreamPipeline", "name": "p", "uid": "u1", "controller": true}],
                "annotations": {"deployment.kubernetes.io/revision": "1", "millrace.io/desired-hash": "ab"},
                "managedFields": [
                    {
                        "manager": "millrace-operator",
                        "operation": "Apply",
                        "apiVersion": "apps/v1",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {
                            "f:metadata": {
                                "f:labels": {"f:app": {}},
                                "f:ownerReferences": {"k:{\"uid\":\"u1\"}": {}},
                                "f:annotations": {"f:millrace.io/desired-hash": {}}
                            },
                            "f:spec": {
                                "f:replicas": {},
                                "f:template": {"f:spec": {"f:containers": {
                                    "k:{\"name\":\"runner\"}": {
                                        ".": {},
                                        "f:name": {},
                                        "f:image": {},
                                        "f:args": {},
                                        "f:env": {
                                            "k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}
                                        },
                                        "f:ports": {
                                            "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {
                                                ".": {}, "f:containerPort": {}
                                            }
                                        }
                                    }
                                }}}
                            }
                        }
                    },
                    {
                        "manager": "kube-controller-manager",
                        "operation": "Update",
                        "subresource": "status",
                        "fieldsV1": {"f:status": {"f:replicas": {}}}
                    }
                ]
            },
            "spec": {
                "replicas": 1,
                "template": {"spec": {"containers": [{
                    "name": "runner",
                    "image": "runner:1",
                    "args": ["sink", "--pipeline", "/etc/p.yaml"],
                    "env": [{"name": "A", "value": "1"}],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "terminationMessagePath": "/dev/termination-log"
                }]}}
            },
            "status": {"replicas": 1}
        })
    }

    fn desired() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "p-sink",
                "namespace": "data",
                "labels": {"app": "p"},
                "ownerReferences": [{"apiVersion": "millrace.io/v1alpha1", "kind": "StreamPipeline", "name": "p", "uid": "u1", "controller": true}],
                "annotations": {"millrace.io/desired-hash": "ab"}
            },
            "spec": {
                "replicas": 1,
                "template": {"spec": {"containers": [{
                    "name": "runner",
                    "image": "runner:1",
                    "args": ["sink", "--pipeline", "/etc/p.yaml"],
                    "env": [{"name": "A", "value": "1"}],
                    "ports": [{"containerPort": 8080}]
                }]}}
            }
        })
    }

    /// What `kubectl edit` does to the managed set: the edited field
    /// moves to the editor's entry, and a parent left with no members is
    /// no longer listed.
    fn taken(live: &mut Value, path: &str) {
        fn remove(node: &mut Map<String, Value>, path: &[&str]) {
            let Some((first, rest)) = path.split_first() else {
                return;
            };
            if rest.is_empty() {
                node.remove(*first);
                return;
            }
            if let Some(Value::Object(child)) = node.get_mut(*first) {
                remove(child, rest);
                if child.is_empty() {
                    node.remove(*first);
                }
            }
        }
        let fields = live
            .pointer_mut("/metadata/managedFields/0/fieldsV1")
            .and_then(Value::as_object_mut)
            .expect("fields");
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        remove(fields, &segments);
    }

    #[test]
    fn an_object_as_applied_is_in_sync_whatever_others_added() {
        assert!(holds_desired(&desired(), &live()));
    }

    /// The live object as the watch caches keep it.
    fn cached(live: &Value) -> Value {
        let mut meta: ObjectMeta =
            serde_json::from_value(live["metadata"].clone()).expect("metadata");
        keep_for_drift(&mut meta);
        let mut out = live.clone();
        out["metadata"] = serde_json::to_value(meta).expect("metadata");
        out
    }

    #[test]
    fn the_cached_copy_keeps_only_the_operators_field_sets_and_reads_the_same() {
        let mut with_others = live();
        with_others["metadata"]["managedFields"]
            .as_array_mut()
            .expect("entries")
            .push(
                json!({"manager": "kubectl-edit", "operation": "Update", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:extra": {}}}}}),
            );
        let cached = cached(&with_others);
        let entries = cached["metadata"]["managedFields"]
            .as_array()
            .expect("entries");
        assert_eq!(entries.len(), 1);
        assert!(entries[0]["fieldsV1"].is_string());
        assert!(holds_desired(&desired(), &cached));
        let mut changed = cached.clone();
        changed["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .expect("container")
            .remove("image");
        assert!(!holds_desired(&desired(), &changed));
        assert_eq!(
            drifted(&desired(), &changed),
            drifted(&desired(), &{
                let mut raw = with_others.clone();
                raw["spec"]["template"]["spec"]["containers"][0]
                    .as_object_mut()
                    .expect("container")
                    .remove("image");
                raw
            })
        );
    }

    #[test]
    fn a_field_someone_else_changed_is_drift() {
        let runner = "/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"runner\"}";
        for path in [
            format!("{runner}/f:image"),
            format!("{runner}/f:args"),
            format!("{runner}/f:env/k:{{\"name\":\"A\"}}/f:value"),
            format!(
                "{runner}/f:ports/k:{{\"containerPort\":8080,\"protocol\":\"TCP\"}}/f:containerPort"
            ),
            format!("{runner}/f:ports"),
            "/f:spec/f:replicas".to_owned(),
            "/f:metadata/f:labels/f:app".to_owned(),
            "/f:metadata/f:ownerReferences".to_owned(),
        ] {
            let mut live = live();
            taken(&mut live, &path);
            assert!(
                drifted(&desired(), &live).is_some(),
                "{path} changed by someone else"
            );
        }
    }

    #[test]
    fn a_field_removed_from_the_object_is_drift() {
        let mut live = live();
        live["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .expect("container")
            .remove("env");
        assert_eq!(
            drifted(&desired(), &live).as_deref(),
            Some("spec.template.spec.containers[name=runner].env")
        );
    }

    #[test]
    fn a_desired_field_never_applied_is_drift() {
        let mut want = desired();
        want["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .expect("env")
            .push(json!({"name": "B", "value": "2"}));
        assert!(!holds_desired(&want, &live()));
        let mut want = desired();
        want["spec"]["minReadySeconds"] = json!(5);
        assert!(!holds_desired(&want, &live()));
    }

    #[test]
    fn without_the_operators_entry_nothing_is_in_sync() {
        let mut live = live();
        live["metadata"]["managedFields"][0]["manager"] = json!("kubectl-edit");
        assert!(!holds_desired(&desired(), &live));
        live["metadata"]
            .as_object_mut()
            .expect("meta")
            .remove("managedFields");
        assert!(!holds_desired(&desired(), &live));
    }

    #[test]
    fn an_empty_list_holds_while_nobody_fills_it() {
        let live = |rules: Value| {
            json!({
                "metadata": {"managedFields": [{
                    "manager": "millrace-operator",
                    "operation": "Apply",
                    "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}
                }], "labels": {"app": "p"}},
                "rules": rules
            })
        };
        let want = json!({"metadata": {"labels": {"app": "p"}}, "rules": []});
        assert!(holds_desired(&want, &live(Value::Null)));
        assert!(holds_desired(&want, &live(json!([]))));
        assert_eq!(
            drifted(&want, &live(json!([{"verbs": ["get"]}]))).as_deref(),
            Some("rules"),
            "a rule added by hand"
        );
    }

    #[test]
    fn set_lists_are_matched_by_value() {
        let live = json!({
            "metadata": {"managedFields": [{
                "manager": "millrace-operator",
                "operation": "Apply",
                "fieldsV1": {"f:metadata": {"f:finalizers": {"v:\"a\"": {}}}}
            }], "finalizers": ["a", "b"]}
        });
        assert!(holds_desired(
            &json!({"metadata": {"finalizers": ["a"]}}),
            &live
        ));
        assert!(!holds_desired(
            &json!({"metadata": {"finalizers": ["a", "b"]}}),
            &live
        ));
    }
}
