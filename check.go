package main

import (
	"fmt"
	"io"
)

func check(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "clonegate check: not built yet")
	return 2
}
