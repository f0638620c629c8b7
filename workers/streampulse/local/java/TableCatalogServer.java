/*
 * StreamPulse's Iceberg REST catalog: the Iceberg metadata Paimon publishes beside the warehouse
 * (<warehouse>/iceberg/<database>/<table>/metadata, an Iceberg Hadoop catalog's layout), served
 * read-only over the Iceberg REST protocol for Trino's Iceberg connector.
 *
 * Iceberg's own REST adapter (RESTCatalogAdapter, RESTCatalogServlet from iceberg-core's test
 * jar) answers the requests; this class puts a Hadoop catalog behind it, binds Jetty to one
 * address, and narrows what it offers to what reading needs:
 *  - GET /v1/config lists namespace and table reads only. A client then never asks for views
 *    (a Hadoop catalog has none; served as the adapter serves them, Trino fails every query
 *    with "Failed to load view"), and never writes: Paimon owns the tables, and a commit from
 *    another engine would be lost at Paimon's next one.
 *  - Anything else about views is a 404 NoSuchViewException; any write is a 405.
 *
 * Usage: java -cp <classes>:<libs>/* streampulse.rest.TableCatalogServer
 *          --warehouse <file:///path/iceberg | s3://bucket/path/iceberg> [--bind 127.0.0.1]
 *          [--port 0] [--s3-endpoint http://...] [--s3-region us-east-1]
 * S3 credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), never
 * from the command line. Once it listens it prints "listening on http://<host>:<port>".
 */
package streampulse.rest;

import jakarta.servlet.DispatcherType;
import jakarta.servlet.Filter;
import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletRequest;
import jakarta.servlet.ServletResponse;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.iceberg.CatalogProperties;
import org.apache.iceberg.hadoop.HadoopCatalog;
import org.apache.iceberg.rest.Endpoint;
import org.apache.iceberg.rest.RESTCatalogAdapter;
import org.apache.iceberg.rest.RESTCatalogServlet;
import org.apache.iceberg.rest.responses.ConfigResponse;
import org.apache.iceberg.rest.responses.ConfigResponseParser;
import org.apache.iceberg.rest.responses.ErrorResponse;
import org.apache.iceberg.rest.responses.ErrorResponseParser;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.servlet.FilterHolder;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;

public final class TableCatalogServer {
  /** What a reader needs: namespaces and tables, listed, checked and loaded. */
  static final List<Endpoint> READ_ENDPOINTS =
      List.of(
          Endpoint.V1_LIST_NAMESPACES,
          Endpoint.V1_LOAD_NAMESPACE,
          Endpoint.V1_NAMESPACE_EXISTS,
          Endpoint.V1_LIST_TABLES,
          Endpoint.V1_LOAD_TABLE,
          Endpoint.V1_TABLE_EXISTS);

  private TableCatalogServer() {}

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = parse(argv);
    String warehouse = required(args, "warehouse");
    HadoopCatalog catalog = new HadoopCatalog();
    catalog.setConf(hadoopConf(args));
    catalog.initialize("streampulse", Map.of(CatalogProperties.WAREHOUSE_LOCATION, warehouse));

    ServletContextHandler context = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    context.addServlet(new ServletHolder(new RESTCatalogServlet(new RESTCatalogAdapter(catalog))), "/*");
    context.addFilter(new FilterHolder(new ReadOnlyTables()), "/*", EnumSet.of(DispatcherType.REQUEST));

    Server server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost(args.getOrDefault("bind", "127.0.0.1"));
    connector.setPort(Integer.parseInt(args.getOrDefault("port", "0")));
    server.addConnector(connector);
    server.setHandler(context);
    server.setStopAtShutdown(true); // SIGTERM: finish requests in flight, then exit
    server.start();
    System.out.printf(
        "listening on http://%s:%d%n", connector.getHost(), connector.getLocalPort());
    System.out.flush();
    server.join();
  }

  private static Configuration hadoopConf(Map<String, String> args) {
    Configuration conf = new Configuration();
    // Paimon names S3 locations s3://; Hadoop's S3 client (S3A) reads them under that scheme too.
    conf.set("fs.s3.impl", "org.apache.hadoop.fs.s3a.S3AFileSystem");
    String endpoint = args.get("s3-endpoint");
    if (endpoint != null && !endpoint.isEmpty()) {
      conf.set("fs.s3a.endpoint", endpoint);
      conf.set("fs.s3a.path.style.access", "true");
      conf.set("fs.s3a.connection.ssl.enabled", String.valueOf(endpoint.startsWith("https:")));
    }
    conf.set("fs.s3a.endpoint.region", args.getOrDefault("s3-region", "us-east-1"));
    String accessKey = System.getenv("AWS_ACCESS_KEY_ID");
    String secretKey = System.getenv("AWS_SECRET_ACCESS_KEY");
    if (accessKey != null && !accessKey.isEmpty()) {
      // Only these keys: the default chain would also ask an instance metadata service.
      conf.set(
          "fs.s3a.aws.credentials.provider",
          "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider");
      conf.set("fs.s3a.access.key", accessKey);
      conf.set("fs.s3a.secret.key", secretKey == null ? "" : secretKey);
    }
    return conf;
  }

  private static Map<String, String> parse(String[] argv) {
    Map<String, String> args = new HashMap<>();
    for (int i = 0; i < argv.length; i += 2) {
      if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
        throw new IllegalArgumentException("expected --name value pairs, got " + argv[i]);
      }
      args.put(argv[i].substring(2), argv[i + 1]);
    }
    return args;
  }

  private static String required(Map<String, String> args, String name) {
    String value = args.get(name);
    if (value == null || value.isEmpty()) {
      throw new IllegalArgumentException("--" + name + " is required");
    }
    return value;
  }

  /** Reads of namespaces and tables pass; views are absent and writes refused. */
  static final class ReadOnlyTables implements Filter {
    @Override
    public void doFilter(ServletRequest req, ServletResponse resp, FilterChain chain)
        throws IOException, ServletException {
      HttpServletRequest request = (HttpServletRequest) req;
      HttpServletResponse response = (HttpServletResponse) resp;
      String path = request.getRequestURI();
      String method = request.getMethod();
      if (path.endsWith("/v1/config") && "GET".equals(method)) {
        ConfigResponse config = ConfigResponse.builder().withEndpoints(READ_ENDPOINTS).build();
        write(response, 200, ConfigResponseParser.toJson(config));
      } else if (path.contains("/views")) {
        error(response, 404, "NoSuchViewException", "this catalog has no views: " + path);
      } else if (!"GET".equals(method) && !"HEAD".equals(method)) {
        error(response, 405, "BadRequestException",
            "read-only catalog: Paimon writes these tables (" + method + " " + path + ")");
      } else {
        chain.doFilter(req, resp);
      }
    }

    private static void error(HttpServletResponse response, int code, String type, String message)
        throws IOException {
      ErrorResponse error =
          ErrorResponse.builder().responseCode(code).withType(type).withMessage(message).build();
      write(response, code, ErrorResponseParser.toJson(error));
    }

    private static void write(HttpServletResponse response, int code, String json)
        throws IOException {
      response.setStatus(code);
      response.setContentType("application/json");
      response.getOutputStream().write(json.getBytes(StandardCharsets.UTF_8));
    }
  }
}
