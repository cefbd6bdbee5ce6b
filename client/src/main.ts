// One stylesheet in the build, in this order (later files build on the tokens in base.css).
import './styles/base.css';
import './styles/controls.css';
import './styles/layout.css';
import './styles/sign-in.css';
import './styles/desktops.css';
import './styles/admin.css';
import './styles/dialogs.css';
import './styles/viewer.css';
import './styles/viewer-controls.css';
import { setUnauthorizedHandler } from './http';
import { loginPage } from './pages/login';
import { desktopsPage } from './pages/desktops';
import { notFoundPage } from './pages/not-found';
import { currentPath, fallback, navigate, route, startRouter } from './router';

// Any 401 from the API: back to sign-in, then back here.
setUnauthorizedHandler(() => {
  if (location.pathname === '/login') return;
  navigate(`/login?next=${encodeURIComponent(currentPath())}`, { replace: true });
});

route('/login', loginPage);
route('/', desktopsPage);
// The viewer (Socket.IO client) and the admin console load on demand: sign-in stays small.
route('/desktop/:sessionId', async (ctx) => (await import('./viewer/viewer-page')).viewerPage(ctx));
route('/admin', async (ctx) => (await import('./admin/admin-page')).adminPage(ctx));
route('/admin/:tab', async (ctx) => (await import('./admin/admin-page')).adminPage(ctx));
fallback(notFoundPage);

const app = document.getElementById('app');
if (app) startRouter(app);
