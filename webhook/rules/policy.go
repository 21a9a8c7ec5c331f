package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Action is what a Policy does with a rule's finding.
type Action string

// The actions a rule can be set to.
const (
	Deny Action = "deny" // reject the request with the finding
	Warn Action = "warn" // admit it; kubectl prints the finding as a warning
	Off  Action = "off"  // ignore the finding
)

// DefaultActions deny what would certainly fail or lose data, and only warn
// where a working cluster can legitimately get there: manifests applied out
// of order, a source Pending under WaitForFirstConsumer, a snapshot still
// being cut.
var DefaultActions = map[Rule]Action{
	RuleCrossNamespace:   Deny,
	RuleDroppedSource:    Deny, // the alternative is an empty volume instead of the user's data
	RuleTemplateAPIGroup: Deny, // the apiserver rejects it whatever the policy says
	RuleMissingSource:    Warn,
	RuleCloneSize:        Deny,
	RuleCloneCapacity:    Warn, // drivers that round the clone up provision it (measured); deny where yours refuses
	RuleSourceNotBound:   Warn,
	RuleSourceDeleting:   Deny,
	RuleStorageClass:     Deny,
	RuleMissingClass:     Warn, // manifests applied out of order: provisioned once the class exists
	RuleDriverMismatch:   Deny,
	RuleVolumeMode:       Deny,
	RuleVolumeModeChange: Warn, // allowed by the content; whether it is provisioned is the driver's call (measured: ours refuses)
	RuleSnapshotNotReady: Warn,
	RuleRestoreSize:      Deny,
	RuleUnknownPopulator: Warn,
	RuleSkippedCheck:     Warn,
}

// Policy decides which findings deny, which warn and which are ignored.
type Policy struct {
	// Rules overrides DefaultActions, rule by rule.
	Rules map[Rule]Action `yaml:"rules"`
	// ExemptNamespaces are never judged: findings there neither deny nor warn.
	ExemptNamespaces []string `yaml:"exemptNamespaces"`
	// APIGroupDefaults adds kinds (of volume populators) whose apiGroup the
	// mutating webhook defaults, beside VolumeSnapshot.
	APIGroupDefaults DefaultAPIGroups `yaml:"apiGroupDefaults"`
	// CrossNamespace opts in to cross-namespace sources.
	CrossNamespace CrossNamespacePolicy `yaml:"crossNamespace"`
}

// CrossNamespacePolicy says when a claim may be filled from another namespace.
type CrossNamespacePolicy struct {
	// AllowWithReferenceGrant admits a cross-namespace source when a Gateway
	// API ReferenceGrant in the source's namespace grants it and the user
	// creating the claim may get the source. Only useful where the
	// CrossNamespaceVolumeDataSource feature gate is on: elsewhere the
	// apiserver drops such a source after admission.
	AllowWithReferenceGrant bool `yaml:"allowWithReferenceGrant"`
}

// Action returns what the policy does with rule.
func (p *Policy) Action(rule Rule) Action {
	if a, ok := p.Rules[rule]; ok {
		return a
	}
	if a, ok := DefaultActions[rule]; ok {
		return a
	}
	return Deny
}

// Exempt reports whether claims in namespace are left alone.
func (p *Policy) Exempt(namespace string) bool { return slices.Contains(p.ExemptNamespaces, namespace) }

// Groups is the kind → apiGroup defaulting in force; callers only read it.
func (p *Policy) Groups() DefaultAPIGroups {
	if len(p.APIGroupDefaults) == 0 {
		return DefaultGroups // read only, as every caller does
	}
	out := DefaultAPIGroups{}
	for k, v := range DefaultGroups {
		out[k] = v
	}
	for k, v := range p.APIGroupDefaults {
		out[k] = v
	}
	return out
}

// Judged is a finding with the action the policy took on it.
type Judged struct {
	Finding
	Action Action
}

// Verdict is the outcome of judging one claim.
type Verdict struct {
	Denials  field.ErrorList
	Warnings []string
	Judged   []Judged // every finding that was not Off, for metrics and logs
}

// Judge applies the policy to findings about a claim in namespace.
func (p *Policy) Judge(namespace string, findings []Finding) Verdict {
	var v Verdict
	if p.Exempt(namespace) {
		return v
	}
	for _, f := range findings {
		switch a := p.Action(f.Rule); a {
		case Deny:
			v.Denials = append(v.Denials, f.Err)
			v.Judged = append(v.Judged, Judged{f, a})
		case Warn:
			v.Warnings = append(v.Warnings, f.String())
			v.Judged = append(v.Judged, Judged{f, a})
		}
	}
	return v
}

// LoadPolicy reads a policy file. Any mistake fails the whole file, naming
// the line, so that a policy is never half applied.
func LoadPolicy(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy parses a policy document; unknown fields, rules and actions
// are errors that name their line.
func ParsePolicy(data []byte) (*Policy, error) {
	p := &Policy{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(p); err != nil && !errors.Is(err, io.EOF) {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return p, nil
}

// UnmarshalYAML accepts only the rules clonegate has.
func (r *Rule) UnmarshalYAML(n *yaml.Node) error {
	if _, ok := DefaultActions[Rule(n.Value)]; !ok {
		return fmt.Errorf("line %d: unknown rule %q; the rules are: %s", n.Line, n.Value, strings.Join(ruleNames(), ", "))
	}
	*r = Rule(n.Value)
	return nil
}

// UnmarshalYAML accepts only deny, warn and off.
func (a *Action) UnmarshalYAML(n *yaml.Node) error {
	switch v := Action(n.Value); v {
	case Deny, Warn, Off:
		*a = v
		return nil
	}
	return fmt.Errorf("line %d: action %q is not one of deny, warn, off", n.Line, n.Value)
}

func ruleNames() []string {
	var names []string
	for r := range DefaultActions {
		names = append(names, string(r))
	}
	sort.Strings(names)
	return names
}
