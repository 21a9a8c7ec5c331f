package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cpuSplit keeps the load generator and the webhooks on separate CPUs
// during the direct load. On shared CPUs the eight clients and their GC
// preempt the webhook they are timing, so the tail measured is the load
// generator's as much as the webhook's (the null webhook's own p99 was
// 2.3 to 3.0 ms on 2 shared cores, 1.2 to 1.5 ms on split ones). In a
// cluster the apiserver, which sends the reviews, does not share the
// webhook pod's CPUs either.
type cpuSplit struct {
	all, load, hooks unix.CPUSet
}

// newCPUSplit halves the CPUs this process may run on: the first half for
// the load generator, the rest for the webhooks. False on a single CPU.
func newCPUSplit() (*cpuSplit, bool) {
	var s cpuSplit
	if err := unix.SchedGetaffinity(0, &s.all); err != nil || s.all.Count() < 2 {
		return nil, false
	}
	half, seen := s.all.Count()/2, 0
	for cpu := 0; seen < s.all.Count(); cpu++ {
		if !s.all.IsSet(cpu) {
			continue
		}
		if seen < half {
			s.load.Set(cpu)
		} else {
			s.hooks.Set(cpu)
		}
		seen++
	}
	return &s, true
}

// apply pins this process to the load generator's CPUs and the webhook
// processes to theirs.
func (s *cpuSplit) apply(hooks ...int) error {
	if err := pin(os.Getpid(), &s.load); err != nil {
		return err
	}
	for _, pid := range hooks {
		if err := pin(pid, &s.hooks); err != nil {
			return err
		}
	}
	return nil
}

// undo lets every process run on all the CPUs again.
func (s *cpuSplit) undo(hooks ...int) error {
	for _, pid := range append([]int{os.Getpid()}, hooks...) {
		if err := pin(pid, &s.all); err != nil {
			return err
		}
	}
	return nil
}

func (s *cpuSplit) String() string {
	return fmt.Sprintf("load generator on CPU %s, webhooks on CPU %s", cpuList(&s.load), cpuList(&s.hooks))
}

// pin sets the affinity of every thread of process pid; threads it starts
// later inherit it.
func pin(pid int, set *unix.CPUSet) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH { // ESRCH: the thread has exited
			return fmt.Errorf("pinning thread %d of process %d: %w", tid, pid, err)
		}
	}
	return nil
}

func cpuList(set *unix.CPUSet) string {
	var cpus []string
	for cpu := 0; len(cpus) < set.Count(); cpu++ {
		if set.IsSet(cpu) {
			cpus = append(cpus, strconv.Itoa(cpu))
		}
	}
	return strings.Join(cpus, ",")
}
