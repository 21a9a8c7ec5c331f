package check

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Position is a place in a file, both counted from 1.
type Position struct{ Line, Column int }

// Line is the line in o.File of the field at fieldPath; see Position.
func (o Object) Line(fieldPath string) int { return o.Position(fieldPath).Line }

// Position is where in o.File the field at fieldPath is (as field.Path
// prints it: spec.volumes[0].ephemeral.volumeClaimTemplate.spec.volumeMode):
// its key, or its item in a list. A field that is not in the file (an
// apiGroup to be defaulted, a size that was never requested) is placed at
// the nearest enclosing field that is; a path that leaves the object at
// once, or an object whose positions could not be read, at the object's
// first line.
func (o Object) Position(fieldPath string) Position {
	pos := o.pos
	n := o.node
	for _, seg := range splitPath(fieldPath) {
		var at Position
		switch n = deref(n); {
		case n == nil:
			return pos
		case n.Kind == yaml.MappingNode:
			n, at = childAt(n, seg)
		case n.Kind == yaml.SequenceNode:
			i, err := strconv.Atoi(seg)
			if err != nil {
				return pos
			}
			n = itemAt(n, i)
			at = positionOf(n, Position{})
		default:
			return pos
		}
		if n == nil {
			return pos
		}
		pos = at
	}
	return pos
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

// childAt is the value under key in a mapping, and the position of the key.
// Of keys given twice the last counts, as it does in the JSON judged.
func childAt(m *yaml.Node, key string) (*yaml.Node, Position) {
	for i := len(m.Content) - 2; i >= 0; i -= 2 {
		if k := m.Content[i]; k.Value == key {
			return m.Content[i+1], Position{k.Line, k.Column}
		}
	}
	return nil, Position{}
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

func positionOf(n *yaml.Node, otherwise Position) Position {
	if n == nil {
		return otherwise
	}
	return Position{n.Line, n.Column}
}
