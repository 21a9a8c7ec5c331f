package check

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Line is the line in o.File of the field at fieldPath (as field.Path
// prints it: spec.volumes[0].ephemeral.volumeClaimTemplate.spec.volumeMode).
// A field that is not in the file (an apiGroup to be defaulted, a size
// that was never requested) is placed at the nearest enclosing field that
// is; a path that leaves the object at once, or an object whose positions
// could not be read, at the object's first line.
func (o Object) Line(fieldPath string) int {
	line := o.line
	n := o.node
	for _, seg := range splitPath(fieldPath) {
		var at int
		switch n = deref(n); {
		case n == nil:
			return line
		case n.Kind == yaml.MappingNode:
			n, at = childAt(n, seg)
		case n.Kind == yaml.SequenceNode:
			i, err := strconv.Atoi(seg)
			if err != nil {
				return line
			}
			n = itemAt(n, i)
			at = lineOf(n, 0)
		default:
			return line
		}
		if n == nil {
			return line
		}
		line = at
	}
	return line
}

// splitPath splits a field path into keys and indices:
// a.b[0].c[key] is a, b, 0, c, key.
func splitPath(p string) []string {
	var segs []string
	for p != "" {
		switch {
		case p[0] == '.':
			p = p[1:]
		case p[0] == '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return append(segs, p[1:])
			}
			segs, p = append(segs, p[1:end]), p[end+1:]
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			segs, p = append(segs, p[:end]), p[end:]
		}
	}
	return segs
}

// positions parses a document for the lines of its fields, counted in the
// file; nil when yaml.v3 cannot read what the JSON conversion could.
func positions(d document) *yaml.Node {
	var doc yaml.Node
	if err := yaml.Unmarshal(d.data, &doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	shift(&doc, d.line-1)
	return deref(doc.Content[0])
}

func shift(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shift(c, by)
	}
}

// deref follows an alias to its anchor.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// childAt is the value under key in a mapping, and the line of the key.
// Of keys given twice the last counts, as it does in the JSON judged.
func childAt(m *yaml.Node, key string) (*yaml.Node, int) {
	for i := len(m.Content) - 2; i >= 0; i -= 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1], m.Content[i].Line
		}
	}
	return nil, 0
}

func child(m *yaml.Node, key string) *yaml.Node {
	if m = deref(m); m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	n, _ := childAt(m, key)
	return deref(n)
}

func itemAt(s *yaml.Node, i int) *yaml.Node {
	if s = deref(s); s == nil || s.Kind != yaml.SequenceNode || i < 0 || i >= len(s.Content) {
		return nil
	}
	return deref(s.Content[i])
}

func lineOf(n *yaml.Node, otherwise int) int {
	if n == nil {
		return otherwise
	}
	return n.Line
}
