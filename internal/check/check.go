// Package check is `clonegate check`: the clone rules applied to manifests,
// without a cluster. It calls the very functions the webhooks call
// (rules.MutateSource, rules.ValidateSource, rules.ValidateTemplate, judged
// by a rules.Policy); what a cluster would know about a claim's source is
// found among the same manifests, and what is not there is unknown, not
// missing (rules.Facts.Complete is false).
package check

import (
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/clonegate/clonegate/webhook/rules"
)

// Finding is one rule's finding about one object, with the action the
// policy took on it. Its JSON is the contract of `clonegate check -o json`.
type Finding struct {
	File      string       `json:"file"`
	Doc       int          `json:"doc"`
	Line      int          `json:"line"`   // of Field in File, see Object.Position
	Column    int          `json:"column"` // of Field in File
	Kind      string       `json:"kind"`
	Namespace string       `json:"namespace"`
	Name      string       `json:"name"`
	Rule      rules.Rule   `json:"rule"`
	Action    rules.Action `json:"action"`
	Field     string       `json:"field"`
	Message   string       `json:"message"`
}

// Report is what checking found.
type Report struct {
	Findings []Finding
	Objects  int // objects read
	Claims   int // claims and claim templates with a data source that were judged
	Judged   []Subject
}

// Subject is an object with at least one claim that was judged: a test case
// to CI systems that report them.
type Subject struct {
	File      string
	Line      int
	Kind      string
	Namespace string
	Name      string
}

// Denied reports whether any finding denies.
func (r *Report) Denied() bool {
	for _, f := range r.Findings {
		if f.Action == rules.Deny {
			return true
		}
	}
	return false
}

// Check judges every claim among objs — PersistentVolumeClaims, StatefulSet
// volumeClaimTemplates, and the generic ephemeral volumes of Pods and of the
// pod templates of Deployments, ReplicaSets, DaemonSets, Jobs and CronJobs —
// with the facts the objects themselves provide. Objects without a namespace
// are in namespace. An object that cannot be decoded is an *InputError.
func Check(objs []Object, policy *rules.Policy, namespace string) (*Report, error) {
	idx, err := newIndex(objs, namespace)
	if err != nil {
		return nil, err
	}
	c := &checker{policy: policy, idx: idx, report: &Report{Objects: len(objs)}}
	var errs []error
	for _, o := range objs {
		claims := c.report.Claims
		ns := namespaceOf(o, namespace)
		if err := c.object(o, ns); err != nil {
			errs = append(errs, err)
		}
		if c.report.Claims > claims {
			c.report.Judged = append(c.report.Judged, Subject{File: o.File, Line: o.pos.Line, Kind: o.GetKind(), Namespace: ns, Name: o.GetName()})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c.report, nil
}

type checker struct {
	policy *rules.Policy
	idx    *index
	report *Report
}

// podSpecAt is where the pod template sits in each workload kind.
var podSpecAt = map[string][]string{
	"apps/Deployment": {"spec", "template", "spec"},
	"apps/ReplicaSet": {"spec", "template", "spec"},
	"apps/DaemonSet":  {"spec", "template", "spec"},
	"batch/Job":       {"spec", "template", "spec"},
	"batch/CronJob":   {"spec", "jobTemplate", "spec", "template", "spec"},
	"/Pod":            {"spec"},
}

func (c *checker) object(o Object, ns string) error {
	gk := o.GroupVersionKind().GroupKind()
	switch {
	case gk.Group == "" && gk.Kind == "PersistentVolumeClaim":
		var claim corev1.PersistentVolumeClaim
		if err := decode(o, &claim); err != nil {
			return err
		}
		c.claim(o, ns, &claim.Spec)
	case gk.Group == "apps" && gk.Kind == "StatefulSet":
		var sts appsv1.StatefulSet
		if err := decode(o, &sts); err != nil {
			return err
		}
		c.templates(o, ns, rules.StatefulSetTemplates(&sts))
	default:
		path, ok := podSpecAt[gk.Group+"/"+gk.Kind]
		if !ok {
			return nil
		}
		podSpec, found := nested(o, path)
		if !found {
			return nil
		}
		var pod corev1.PodSpec
		if err := decode(podSpec, &pod); err != nil {
			return &InputError{File: o.File, Doc: o.Doc, Err: fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), errors.Unwrap(err))}
		}
		c.templates(o, ns, rules.PodTemplates(field.NewPath(path[0], path[1:]...), &pod))
	}
	return nil
}

// claim judges a claim as the two webhooks would, in their order: the
// mutating one defaults apiGroups and may deny; only what it lets through
// reaches the validating one.
func (c *checker) claim(o Object, ns string, spec *corev1.PersistentVolumeClaimSpec) {
	if _, ok := rules.SourceOf(ns, spec); !ok {
		return
	}
	c.report.Claims++
	spec = spec.DeepCopy()
	m := rules.MutateSource(ns, spec, c.policy.Groups())
	for _, w := range m.Warnings {
		fieldPath, msg, _ := strings.Cut(w, ": ")
		c.add(o, ns, Finding{Rule: rules.RuleAPIGroupDefault, Action: rules.Warn, Field: fieldPath, Message: msg})
	}
	if c.judge(o, ns, m.Findings) {
		return // denied by the mutating webhook: the validating one never sees it
	}
	c.judge(o, ns, rules.ValidateSource(ns, spec, c.idx.facts(ns, spec)))
}

func (c *checker) templates(o Object, ns string, templates []rules.Template) {
	var findings []rules.Finding
	for _, t := range templates {
		if _, ok := rules.SourceOf(ns, t.Spec); !ok {
			continue
		}
		c.report.Claims++
		f, _ := rules.ValidateTemplate(ns, t, c.policy.Groups(), nil, func(spec *corev1.PersistentVolumeClaimSpec) (rules.Facts, error) {
			return c.idx.facts(ns, spec), nil
		})
		findings = append(findings, f...)
	}
	c.judge(o, ns, findings)
}

// judge adds the findings the policy does not turn off, and reports whether
// any denies.
func (c *checker) judge(o Object, ns string, findings []rules.Finding) bool {
	v := c.policy.Judge(ns, findings)
	for _, j := range v.Judged {
		c.add(o, ns, Finding{Rule: j.Rule, Action: j.Action, Field: j.Err.Field, Message: j.Err.ErrorBody()})
	}
	return len(v.Denials) > 0
}

func (c *checker) add(o Object, ns string, f Finding) {
	pos := o.Position(f.Field)
	f.File, f.Doc, f.Line, f.Column, f.Kind, f.Namespace, f.Name = o.File, o.Doc, pos.Line, pos.Column, o.GetKind(), ns, o.GetName()
	c.report.Findings = append(c.report.Findings, f)
}

func namespaceOf(o Object, def string) string {
	if ns := o.GetNamespace(); ns != "" {
		return ns
	}
	return def
}
