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
	RuleDroppedSource   Rule = "dropped-source" // a dataSource in a shape the apiserver drops
	// A claim template (StatefulSet, generic ephemeral volume) whose source has
	// no apiGroup: the apiserver rejects the workload; `clonegate check` says so.
	RuleTemplateAPIGroup Rule = "template-api-group"

	// Validating webhook: judged against the source object.
	RuleMissingSource  Rule = "missing-source"
	RuleCloneSize      Rule = "clone-size"     // below the source's request: the provisioner refuses
	RuleCloneCapacity  Rule = "clone-capacity" // below the source's real capacity: most drivers refuse
	RuleSourceNotBound Rule = "source-not-bound"
	RuleSourceDeleting Rule = "source-deleting"
	RuleStorageClass   Rule = "storage-class" // a class that can never work: "" on the claim, none on the source
	RuleMissingClass   Rule = "missing-class" // a class that does not exist (yet): Pending until it does
	RuleDriverMismatch Rule = "driver-mismatch"
	RuleVolumeMode     Rule = "volume-mode"
	// A restore into another mode that the content allows: up to the driver.
	RuleVolumeModeChange Rule = "volume-mode-change"
	RuleSnapshotNotReady Rule = "snapshot-not-ready"
	RuleRestoreSize      Rule = "restore-size"
	RuleUnknownPopulator Rule = "unknown-populator"
	// A secondary fact (a volume, a content, a class) could not be read: the
	// checks that need it were skipped. Never a denial by default.
	RuleSkippedCheck Rule = "skipped-check"
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
