package measure

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// procStat is what /proc/<pid>/stat says about a process's parent and CPU time.
type procStat struct {
	ppid                        int
	utime, stime, cutime, cstim float64 // seconds
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name is in parentheses and may hold spaces and parentheses itself.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("measure: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("measure: short /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
	num := func(k int) float64 { v, _ := strconv.ParseFloat(f[k-3], 64); return v / clockTicks }
	ppid, _ := strconv.Atoi(f[1])
	return procStat{ppid: ppid, utime: num(14), stime: num(15), cutime: num(16), cstim: num(17)}, nil
}

// CPUSeconds returns the user+system CPU seconds process pid has used itself (not its
// children); 0 when it is gone.
func CPUSeconds(pid int) float64 {
	s, err := readStat(pid)
	if err != nil {
		return 0
	}
	return s.utime + s.stime
}

// Children returns the pids of the live processes whose parent is pid.
func Children(pid int) []int {
	return parents()[pid]
}

// parents maps every live process to its children, from one scan of /proc.
func parents() map[int][]int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	m := make(map[int][]int)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s, err := readStat(pid)
		if err != nil {
			continue
		}
		m[s.ppid] = append(m[s.ppid], pid)
	}
	return m
}

// ResetPeakOf resets process pid's peak RSS (VmHWM) to its current RSS.
func ResetPeakOf(pid int) {
	_ = os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}

// Proc names a process to watch. With Tree set it stands for the process and all its
// children, as a PostgreSQL postmaster and its backends do: CPU counts the process,
// its live children and the children it has reaped (cutime/cstime); peak RSS is that
// of the largest single process among them.
type Proc struct {
	PID  int
	Tree bool
}

// Usage is what a watched process used while a Watch ran.
type Usage struct {
	CPU    float64 `json:"cpu_s"`       // user+system seconds
	PeakMB float64 `json:"peak_rss_mb"` // largest VmHWM seen (MiB)
	// PrivateMB is the largest RssAnon sampled (MiB): the process's own memory,
	// without the shared memory (PostgreSQL's shared buffers) VmHWM counts.
	PrivateMB float64 `json:"peak_private_mb,omitempty"`
}

// Watch measures the CPU seconds and peak RSS of long-lived processes over an interval.
// Peak RSS of a tree's children is sampled (every interval given to StartWatch), so a
// child that lives shorter than that may be missed.
type Watch struct {
	procs map[string]Proc
	cpu0  map[string]float64
	mu    sync.Mutex
	peak  map[string]float64
	priv  map[string]float64
	stop  chan struct{}
	done  chan struct{}
}

// StartWatch resets the peak RSS of procs (children included for trees), notes their
// CPU times and samples their peak RSS every `every` until Stop.
func StartWatch(procs map[string]Proc, every time.Duration) *Watch {
	w := &Watch{procs: procs, cpu0: map[string]float64{}, peak: map[string]float64{}, priv: map[string]float64{},
		stop: make(chan struct{}), done: make(chan struct{})}
	kids := parents()
	for name, p := range procs {
		ResetPeakOf(p.PID)
		if p.Tree {
			for _, c := range kids[p.PID] {
				ResetPeakOf(c)
			}
		}
		w.cpu0[name] = cpuOf(p, kids)
	}
	w.sample()
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.sample()
			}
		}
	}()
	return w
}

func cpuOf(p Proc, kids map[int][]int) float64 {
	s, err := readStat(p.PID)
	if err != nil {
		return 0
	}
	total := s.utime + s.stime
	if p.Tree {
		total += s.cutime + s.cstim
		for _, c := range kids[p.PID] {
			total += CPUSeconds(c)
		}
	}
	return total
}

func (w *Watch) sample() {
	var kids map[int][]int
	for _, p := range w.procs {
		if p.Tree {
			kids = parents()
			break
		}
	}
	for name, p := range w.procs {
		m, a := PeakMB(strconv.Itoa(p.PID)), statusMB(strconv.Itoa(p.PID), "RssAnon:")
		if p.Tree {
			for _, c := range kids[p.PID] {
				m = max(m, PeakMB(strconv.Itoa(c)))
				a = max(a, statusMB(strconv.Itoa(c), "RssAnon:"))
			}
		}
		w.mu.Lock()
		w.peak[name] = max(w.peak[name], m)
		w.priv[name] = max(w.priv[name], a)
		w.mu.Unlock()
	}
}

// Stop ends the watch and returns each process's usage since StartWatch.
func (w *Watch) Stop() map[string]Usage {
	close(w.stop)
	<-w.done
	w.sample()
	kids := parents()
	out := make(map[string]Usage, len(w.procs))
	for name, p := range w.procs {
		out[name] = Usage{CPU: max(0, cpuOf(p, kids)-w.cpu0[name]), PeakMB: w.peak[name], PrivateMB: w.priv[name]}
	}
	return out
}

// ParentPID returns the parent of process pid.
func ParentPID(pid int) (int, error) {
	s, err := readStat(pid)
	return s.ppid, err
}

// Median returns the median of xs (0 for none).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
