import Hummingbird
import NIOCore
import TitaniumHTTP

/// A small single-page app at `/blog/` (plain HTML and JavaScript, no build step) that lists,
/// reads and creates posts through `/api`. Served through the gateway it can also log in.
enum SamplePage {
    /// Hummingbird matches `/blog` and `/blog/` alike.
    static func register(on router: Router<TitaniumRequestContext>) {
        router.get("/blog/") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                body: .init(byteBuffer: ByteBuffer(string: html))
            )
        }
    }

    static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Titanium blog</title>
    <style>
      body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #1d232a; }
      article { border-bottom: 1px solid #d5dbe1; padding: .75rem 0; }
      h1 { font-size: 1.6rem; } h2 { font-size: 1.1rem; margin: 0; }
      .meta { color: #56606b; font-size: .85rem; }
      form { display: grid; gap: .5rem; margin: 1rem 0; } input, textarea, button { font: inherit; padding: .4rem; }
      .error { color: #a1131b; } pre { white-space: pre-wrap; }
    </style>
    </head>
    <body>
    <h1>Titanium blog</h1>
    <section aria-label="Log in">
      <form id="login"><input name="username" placeholder="username" autocomplete="username" required>
      <input name="password" type="password" placeholder="password" autocomplete="current-password" required>
      <button>Log in</button></form>
    </section>
    <section aria-label="New post">
      <form id="create"><input name="title" placeholder="title" maxlength="200" required>
      <textarea name="body" rows="4" placeholder="body" required></textarea><button>Publish</button></form>
    </section>
    <p id="status" role="status"></p>
    <section id="detail" aria-live="polite"></section>
    <section id="posts" aria-label="Posts"></section>
    <script>
    const status = document.getElementById('status');
    let token = sessionStorage.getItem('token');
    const text = (s) => { const d = document.createElement('div'); d.textContent = s; return d.innerHTML; };
    async function api(path, options = {}) {
      const headers = Object.assign({'Content-Type': 'application/json'}, token ? {Authorization: 'Bearer ' + token} : {});
      const response = await fetch('/api' + path, Object.assign({headers}, options));
      const body = response.status === 204 ? null : await response.json();
      if (!response.ok) throw new Error(body && body.error ? body.error.message : response.statusText);
      return body;
    }
    async function load() {
      try {
        const page = await api('/posts?limit=20');
        document.getElementById('posts').innerHTML = page.posts.map(p =>
          `<article><h2><a href="#${p.id}" data-id="${p.id}">${text(p.title)}</a></h2>
           <div class="meta">by ${text(p.author)} · ${text(p.created_at)}</div></article>`).join('') || '<p>No posts yet.</p>';
      } catch (e) { status.innerHTML = `<span class="error">${text(e.message)}</span>`; }
    }
    document.getElementById('posts').addEventListener('click', async (event) => {
      const id = event.target.dataset.id; if (!id) return;
      const p = await api('/posts/' + id);
      document.getElementById('detail').innerHTML = `<h2>${text(p.title)}</h2><pre>${text(p.body)}</pre>`;
    });
    document.getElementById('login').addEventListener('submit', async (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      try {
        const t = await api('/auth/login', {method: 'POST', body: JSON.stringify({username: form.get('username'), password: form.get('password')})});
        token = t.access_token; sessionStorage.setItem('token', token); status.textContent = 'Logged in.';
      } catch (e) { status.innerHTML = `<span class="error">${text(e.message)}</span>`; }
    });
    document.getElementById('create').addEventListener('submit', async (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      try {
        await api('/posts', {method: 'POST', body: JSON.stringify({title: form.get('title'), body: form.get('body')})});
        event.target.reset(); status.textContent = 'Published.'; load();
      } catch (e) { status.innerHTML = `<span class="error">${text(e.message)}</span>`; }
    });
    load();
    </script>
    </body>
    </html>
    """#
}
