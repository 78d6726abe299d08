// Package counter counts a bench app's deliveries and serves the count as GET /count:
// {"count":N,"first":t0,"last":t1}, the times of the first and last delivery in unix seconds.
// Every Go bench app reports through it, so run.sh reads them all alike.
package counter

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Counter is safe for concurrent use; its zero value is ready.
type Counter struct {
	mu          sync.Mutex
	count       uint64
	first, last float64
}

// Add counts n deliveries that arrived now.
func (c *Counter) Add(n uint64) {
	t := float64(time.Now().UnixNano()) / 1e9
	c.mu.Lock()
	if c.count == 0 {
		c.first = t
	}
	c.count += n
	c.last = t
	c.mu.Unlock()
}

// ServeHTTP answers GET /count.
func (c *Counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	n, f, l := c.count, c.first, c.last
	c.mu.Unlock()
	w.Header().Set("content-type", "application/json")
	fmt.Fprintf(w, `{"count":%d,"first":%.6f,"last":%.6f}`, n, f, l)
}
