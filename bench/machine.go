package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// machine describes where the benchmark ran, from /proc.
type machine struct {
	cores    int
	model    string
	memTotal string
	loadAvg  string
	goVer    string
}

func readMachine() machine {
	m := machine{cores: runtime.NumCPU(), goVer: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		n := 0
		for line := range strings.Lines(string(b)) {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "processor":
				n++
			case "model name":
				if m.model == "" {
					m.model = strings.TrimSpace(v)
				}
			}
		}
		if n > 0 {
			m.cores = n
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kib := statusKiB(b, "MemTotal:"); kib > 0 {
			m.memTotal = strconv.FormatFloat(float64(kib)/(1<<20), 'f', 1, 64) + " GiB"
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.loadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// selfCPU is this process's user + system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a process's user + system CPU time from /proc/<pid>/stat (fields 14 and 15, in
// clock ticks of 1/100 s, USER_HZ on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	// The command name is in parentheses and may hold spaces: count fields after it.
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
