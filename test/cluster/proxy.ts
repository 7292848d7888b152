import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { sleep } from '../helpers.ts'
import { freePort } from '../postgres.ts'
import { programMissing } from '../services.ts'

/**
 * Debian's nginx in front of the nodes of a test cluster, as a user would put it: round robin (no
 * ip_hash, no sticky cookie), HTTP/1.1 to the nodes with the WebSocket upgrade passed on, no buffering
 * of answers (SSE, NDJSON) nor of request bodies, read timeouts longer than any long poll or
 * heartbeat. nginx rather than HAProxy: it is what most deployments already run in front of HTTP
 * services (and what the Kubernetes ingress most clusters use is built on), so its settings are the
 * ones users will copy from docs/deploy.md; HAProxy needs no setting for streams at all (it does not
 * buffer, and passes upgrades through), so nginx is the one whose settings are worth testing.
 *
 * The test's own nginx: its configuration, pid, lock, logs and temporary files in a directory of its
 * own, listening on a spare loopback port, in the foreground as a child of the test (never the
 * system's nginx, its configuration or its service).
 */

const NGINX_HINT = 'apt-get install nginx; .ci/run installs it'

/** Why the proxy cannot run here, or undefined when it can. */
export function nginxMissing(): string | undefined {
  return programMissing('nginx', NGINX_HINT)
}

/** `nginx` on the PATH, or where Debian puts it (/usr/sbin is not on every user's PATH). */
function nginxCommand(): string {
  const dirs = (process.env['PATH'] ?? '').split(delimiter).concat('/usr/sbin', '/usr/local/sbin')
  return (
    dirs.map((dir) => join(dir, 'nginx')).find((path) => path.startsWith('/') && existsSync(path)) ?? 'nginx'
  )
}

/**
 * The part of the configuration a user copies (docs/deploy.md shows exactly this, with its ports;
 * test/cluster/docs.test.ts checks that it does): the upstream of the nodes and the server in front.
 */
export function nginxSite(listen: string, nodes: string[]): string {
  return `# The WebSocket upgrade is passed on; other requests keep their upstream connection alive.
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      '';
}

upstream herald {
    # Round robin (the default): any node serves any request, no sticky sessions.
${nodes.map((node) => `    server ${node} max_fails=1 fail_timeout=5s;`).join('\n')}
    # Idle connections to the nodes, closed by nginx after 60 s (Herald closes them after 72 s).
    keepalive 32;
}

server {
    listen ${listen};

    # Herald refuses bodies over --body-limit (1mb) itself, in problem+json.
    client_max_body_size 2m;

    location / {
        proxy_pass http://herald;
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;

        # SSE and NDJSON: each event goes out as it comes, nothing is held back or cached.
        proxy_buffering off;
        proxy_cache off;
        # Bodies go to the node as they arrive (a stream or a long upload is not spooled to disk).
        proxy_request_buffering off;

        # Streams and WebSockets stay open for hours; they carry a heartbeat every --heartbeat
        # (15s), long polls wait up to 60 s: an hour is well past both.
        proxy_read_timeout 1h;
        proxy_send_timeout 1h;
        proxy_connect_timeout 2s;

        # A node that is down, or draining (503), is skipped: the request goes to the next one.
        # nginx never resends a POST that reached a node: publish with an Idempotency-Key and retry.
        proxy_next_upstream error timeout http_503;
        proxy_next_upstream_tries 3;
    }
}
`
}

/** The whole file of the test's nginx: its own pid, logs and temporary files, in the foreground. */
function nginxConfig(dir: string, site: string): string {
  return `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
lock_file ${dir}/nginx.lock;
error_log ${dir}/error.log warn;
worker_rlimit_nofile 16384;

events {
    worker_connections 8192;
}

http {
    log_format upstream '$request_method $uri $status $upstream_addr';
    access_log ${dir}/access.log upstream;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;

${site.replace(/^(?=.)/gm, '    ')}}
`
}

export interface Nginx {
  url: string
  port: number
  /** One entry per request answered so far: the node (`127.0.0.1:port`) that answered it. */
  accessLog(): Promise<Array<{ method: string; path: string; status: number; upstream: string }>>
  /** Graceful stop (SIGQUIT: open connections finish), or at once. */
  stop(graceful?: boolean): Promise<void>
}

const running = new Set<ChildProcess>()
process.on('exit', () => {
  // nginx runs in a process group of its own: its workers go with it.
  for (const child of running) if (child.pid !== undefined) killGroup(child.pid)
})

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    // already gone
  }
}

/** nginx on `port` (a spare one by default) of loopback, round robin over `nodes` (`127.0.0.1:port` each). */
export async function startNginx(nodes: string[], port?: number): Promise<Nginx> {
  port ??= await freePort()
  const dir = await mkdtemp(join(tmpdir(), 'herald-nginx-'))
  // nginx's workers run as nobody when it is started as root: they must reach their files.
  await chmod(dir, 0o755)
  const file = join(dir, 'nginx.conf')
  await writeFile(file, nginxConfig(dir, nginxSite(`127.0.0.1:${port}`, nodes)))
  const child = spawn(nginxCommand(), ['-p', dir, '-c', file, '-e', join(dir, 'error.log')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  running.add(child)
  let output = ''
  child.stdout!.on('data', (chunk) => {
    output += chunk
  })
  child.stderr!.on('data', (chunk) => {
    output += chunk
  })
  const exited = once(child, 'exit')
  void exited.then(() => running.delete(child))
  const errorLog = () => readFile(join(dir, 'error.log'), 'utf8').catch(() => '')
  const deadline = Date.now() + 10_000
  while (!(await listening(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      killGroup(child.pid!)
      throw new Error(`nginx did not start:\n${output}\n${await errorLog()}`)
    }
    await sleep(50)
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    async accessLog() {
      const text = await readFile(join(dir, 'access.log'), 'utf8').catch(() => '')
      return text
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => {
          const [method = '', path = '', status = '', upstream = ''] = line.split(' ')
          return { method, path, status: Number(status), upstream }
        })
    },
    async stop(graceful = false) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(graceful ? 'SIGQUIT' : 'SIGTERM')
        const timer = setTimeout(() => killGroup(child.pid!), 10_000)
        await exited
        clearTimeout(timer)
      }
      killGroup(child.pid!) // a worker left behind, were there one
      await rm(dir, { recursive: true, force: true })
    },
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.on('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.on('error', () => resolve(false))
  })
}
