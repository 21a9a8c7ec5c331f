package rules

import (
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Rule names one check. The names are stable: the policy file, metrics and
// `clonegate check -o json` use them.
type Rule string

// The rules. Each is documented in the README's rules table.
const (
	// Mutating webhook: judged before the apiserver drops what it does not know.
	RuleAPIGroupDefault Rule = "api-group-default" // a warning whenever apiGroup was defaulted
	RuleCrossNamespace  Rule = "cross-namespace-source"
	RuleDroppedSource   Rule = "dropped-source" // a kind without apiGroup the apiserver will drop
	// A claim template (StatefulSet, generic ephemeral volume) whose source has
	// no apiGroup: the apiserver rejects the workload; `clonegate check` says so.
	RuleTemplateAPIGroup Rule = "template-api-group"

	// Validating webhook: judged against the source object.
	RuleMissingSource    Rule = "missing-source"
	RuleCloneSize        Rule = "clone-size"
	RuleCloneCapacity    Rule = "clone-capacity" // smaller than the source's volume, not its request
	RuleSourceNotBound   Rule = "source-not-bound"
	RuleSourceDeleting   Rule = "source-deleting"
	RuleStorageClass     Rule = "storage-class"
	RuleDriverMismatch   Rule = "driver-mismatch"
	RuleVolumeMode       Rule = "volume-mode"
	RuleSnapshotNotReady Rule = "snapshot-not-ready"
	RuleRestoreSize      Rule = "restore-size"
	RuleUnknownPopulator Rule = "unknown-populator"
)

// Finding is one rule's complaint about a claim, in field style.
type Finding struct {
	Rule Rule
	Err  *field.Error
}

func (f Finding) String() string { return f.Err.Error() }

func finding(rule Rule, path *field.Path, value any, detail string) Finding {
	return Finding{Rule: rule, Err: field.Invalid(path, value, detail)}
}
