package check

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/clonegate/clonegate/webhook/rules"
)

// Formats are the output formats of `clonegate check -o`.
var Formats = []string{"text", "json", "sarif", "github", "junit"}

// verbs say what each action means to the person reading.
var verbs = map[rules.Action]string{rules.Deny: "denied", rules.Warn: "warning"}

// WriteText prints one finding per line, line being that of the offending
// field in the file (see Object.Line):
//
//	path:line Kind namespace/name: denied [rule] field: message
//	path:line Kind namespace/name: warning [rule] field: message
func WriteText(w io.Writer, findings []Finding) error {
	for _, f := range findings {
		if _, err := fmt.Fprintf(w, "%s:%d %s %s/%s: %s [%s] %s: %s\n",
			f.File, f.Line, f.Kind, f.Namespace, f.Name, verbs[f.Action], f.Rule, f.Field, f.Message); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON prints the findings as one JSON array ([] when there are none).
func WriteJSON(w io.Writer, findings []Finding) error {
	if findings == nil {
		findings = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(findings)
}

// Summary is the closing line for a person: what was checked and found.
func (r *Report) Summary() string {
	var denied, warned int
	for _, f := range r.Findings {
		if f.Action == rules.Deny {
			denied++
		} else {
			warned++
		}
	}
	return fmt.Sprintf("%d %s, %d %s with a data source: %d denied, %d %s",
		r.Objects, plural(r.Objects, "object", "objects"), r.Claims, plural(r.Claims, "claim", "claims"),
		denied, warned, plural(warned, "warning", "warnings"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// subject names the object a finding is about, as a person reads it.
func (f Finding) subject() string {
	return fmt.Sprintf("%s %s/%s", f.Kind, f.Namespace, f.Name)
}
