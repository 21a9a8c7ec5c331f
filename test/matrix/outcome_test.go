package matrix

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// result is what became of the claim under test.
type result int

const (
	unknown    result = iota
	boundData         // Bound, and its volume holds the source's data
	boundEmpty        // Bound, but the source's data is not in its volume
	bound             // Bound (a claim without a source: nothing to compare)
	pending           // still Pending when the row settled
	rejected          // kubectl create failed: the apiserver refused it (not clonegate)
	denied            // kubectl create failed: clonegate denied it
)

func (r result) String() string {
	return [...]string{"?", "Bound, source's data", "Bound, EMPTY", "Bound", "Pending", "rejected by the apiserver", "denied"}[r]
}

// outcome is one run of a row: what kubectl said and what became of the claim.
type outcome struct {
	result   result
	event    string   // Pending: the claim's last event, "Reason: message"
	message  string   // rejected or denied: kubectl's error
	warnings []string // kubectl's "Warning:" lines
	findings []finding
}

// finding is one rule clonegate applied, read from its log.
type finding struct{ rule, action string }

func (o outcome) rules(action string) []string {
	var out []string
	for _, f := range o.findings {
		if f.action == action && !contains(out, f.rule) {
			out = append(out, f.rule)
		}
	}
	sort.Strings(out)
	return out
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// verdict is clonegate's answer at apply, the way the table prints it.
func (o outcome) verdict() string {
	if o.result == denied {
		return "denied: " + strings.Join(o.rules("deny"), ", ")
	}
	if o.result == rejected {
		return "rejected by the apiserver"
	}
	notes := o.rules("warn")
	if len(notes) == 0 {
		// The mutating webhook's own changes are warnings without a rule: name the field.
		for _, w := range o.warnings {
			field, rest, _ := strings.Cut(w, ": ")
			what := "warning on " + field
			switch {
			case strings.HasPrefix(rest, "defaulted"):
				what = field + " defaulted"
			case strings.HasPrefix(rest, "removed"):
				what = field + " removed"
			}
			notes = append(notes, what)
		}
	}
	if len(notes) == 0 {
		return "admitted"
	}
	return "admitted, warned: " + strings.Join(notes, ", ")
}

// warned says whether clonegate said anything at apply: a warning, a defaulting, a denial.
func (o outcome) warned() bool {
	return o.result == denied || len(o.findings) > 0 || len(o.warnings) > 0
}

// cell is the outcome in a table cell.
func (o outcome) cell() string {
	switch o.result {
	case pending:
		if o.event != "" {
			e := eventNoise.ReplaceAllString(o.event, "")
			e = waitingNoise.ReplaceAllString(e, "waiting for $1 (nothing else said)")
			return "Pending (" + shorten(e, 100) + ")"
		}
		return "Pending (no event)"
	case rejected:
		return "rejected: " + shorten(o.message, 90)
	default:
		return o.result.String()
	}
}

// eventNoise is the provisioner's preamble to every data source error.
var eventNoise = regexp.MustCompile(`error getting handle for DataSource Type \w+ by Name \w+: `)

// waitingNoise is the PV controller's note while a provisioner has said nothing.
var waitingNoise = regexp.MustCompile(`Waiting for a volume to be created either by the external provisioner '([^']*)'.*`)

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// want is what a row expects from one run.
type want struct {
	result result
	event  string // Pending: a substring of the claim's last event
	rule   string // with clonegate: the rule that denies or warns
	// with clonegate: a warning (of the mutating webhook, which names no rule) containing this
	warning string
}

func (w want) String() string {
	s := w.result.String()
	if w.event != "" {
		s += fmt.Sprintf(" (%q)", w.event)
	}
	if w.rule != "" {
		s += " by " + w.rule
	}
	return s
}
