// The echo backend of the end-to-end tests, run as pods of Deployments. Every
// request is answered with JSON naming the pod that answered, like
// tests/integration/backends/echo.py does for processes:
//
//	{"backend": POD_NAME, "pod_ip": POD_IP, "method": "GET", "path": "/x", "host": "..."}
//
// GET /healthz is the readiness endpoint: 200 while ready, 503 after
// POST /control/unready (and again 200 after POST /control/ready), so a test can make
// one pod fail its readiness probe. On SIGTERM it fails readiness, keeps serving for
// DRAIN_SECONDS (default 5, as a server behind a load balancer does while the
// endpoint is withdrawn), then stops accepting and finishes in-flight requests.
package main

import (
	"context"
	"encoding/json"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	podIP := os.Getenv("POD_IP")
	addr := os.Getenv("LISTEN")
	if addr == "" {
		addr = ":8080"
	}
	drain := 5
	if v, err := strconv.Atoi(os.Getenv("DRAIN_SECONDS")); err == nil && v >= 0 {
		drain = v
	}

	var unready atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if unready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("POST /control/unready", func(w http.ResponseWriter, r *http.Request) {
		unready.Store(true)
		w.Write([]byte("unready\n"))
	})
	mux.HandleFunc("POST /control/ready", func(w http.ResponseWriter, r *http.Request) {
		unready.Store(false)
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"backend": name,
			"pod_ip":  podIP,
			"method":  r.Method,
			"path":    r.URL.RequestURI(),
			"host":    r.Host,
		})
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		<-stop
		unready.Store(true)
		log.Printf("signal: draining for %ds", drain)
		time.Sleep(time.Duration(drain) * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		close(done)
	}()
	log.Printf("echo %s listening on %s", name, addr)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	<-done
}
